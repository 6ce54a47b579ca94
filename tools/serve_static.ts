/**
 * A minimal static file server for trying `mod.ts` remotely (`deno run -A <url>/mod.ts ...`):
 * serves a folder on 127.0.0.1 with the content types Deno needs (application/typescript for .ts).
 *   deno run -A tools/serve_static.ts [--root .] [--port 8765]
 * @module
 */
import { parseArgs } from "node:util";
import { extname, join, normalize } from "node:path";

const TYPES: Record<string, string> = {
  ".ts": "application/typescript; charset=utf-8",
  ".js": "application/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".proto": "text/plain; charset=utf-8",
};

/** Serves `root` on 127.0.0.1:`port` (0 = any free port); returns the server and its base URL. */
export function serveStatic(
  root: string,
  port = 0,
): { server: Deno.HttpServer; url: Promise<string> } {
  let resolveUrl: (u: string) => void;
  const url = new Promise<string>((r) => resolveUrl = r);
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port,
    onListen: ({ port }) => resolveUrl(`http://127.0.0.1:${port}/`),
  }, async (req) => {
    const path = normalize(decodeURIComponent(new URL(req.url).pathname));
    if (path.includes("..")) return new Response("bad path", { status: 400 });
    try {
      const body = await Deno.readFile(join(root, path));
      return new Response(body, {
        headers: { "content-type": TYPES[extname(path)] ?? "application/octet-stream" },
      });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  return { server, url };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { root: { type: "string" }, port: { type: "string" } } });
  const { url } = serveStatic(values.root ?? ".", Number(values.port ?? 8765));
  console.error(`serving ${values.root ?? "."} at ${await url}`);
}
