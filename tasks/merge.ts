/**
 * Task `merge`: after the shards of a sharded `sample` or `guide` run have finished, checks that
 * every image is there, removes temp files left by killed workers, and writes the grids and a
 * combined run.json.
 *   deno task merge --out <run folder>
 * @module
 */
import { writeGrid, writeJsonAtomic } from "../lib/io/outputs.ts";
import { removeStaleTemps } from "../lib/shard.ts";
import { parseFlags, UsageError, versions } from "./_args.ts";
import { missingItems, readImages, type RunItem } from "./_run_folder.ts";

interface Identity {
  task: "sample" | "guide";
  seeds: number[];
  classes?: string[];
  shape: [number, number, number];
}

/** The items a run folder's config.json promises. */
export function itemsOf(id: Identity): RunItem[] {
  if (id.task === "guide") {
    return (id.classes ?? []).flatMap((name) =>
      id.seeds.map((seed) => ({ seed, file: `images/${name}/${seed}.png` }))
    );
  }
  return id.seeds.map((seed) => ({ seed, file: `images/${seed}.png` }));
}

/** Runs `merge`. */
export async function mergeTask(args: string[]): Promise<void> {
  const f = parseFlags("merge", args, { out: { type: "string" } });
  if (!f.out) throw new UsageError("merge needs --out <run folder> (the --out of the sharded run)");
  const out = f.out.replace(/\/+$/, "");
  let id: Identity;
  try {
    id = JSON.parse(await Deno.readTextFile(`${out}/config.json`));
  } catch {
    throw new UsageError(
      `${out} is not a run folder (no readable config.json); pass the --out of a sample or guide run`,
    );
  }
  const items = itemsOf(id);
  const missing = await missingItems(out, items);
  if (missing.length) {
    throw new Error(
      `${out} is incomplete: ${missing.length} of ${items.length} images missing (` +
        missing.slice(0, 10).map((m) => m.file).join(", ") + (missing.length > 10 ? ", ..." : "") +
        `); rerun the shards that own them with the same flags (finished images are kept)`,
    );
  }
  const removed = await removeStaleTemps(out);
  const [c, h, w] = id.shape;
  const shape = { c, h, w };
  const images = await readImages(out, items, shape);
  const per = c * h * w;
  if (id.task === "guide") {
    const n = id.seeds.length;
    for (const [ci, name] of (id.classes ?? []).entries()) {
      await writeGrid(
        `${out}/grid_${name}.png`,
        images.subarray(ci * n * per, (ci + 1) * n * per),
        n,
        shape,
        "pm1",
      );
    }
    await writeGrid(`${out}/grid.png`, images, items.length, shape, "pm1", n);
  } else {
    await writeGrid(`${out}/grid.png`, images, items.length, shape, "pm1");
  }
  const shards = [];
  for await (const e of Deno.readDir(out)) {
    if (/^run\.shard-\d+-of-\d+\.json$/.test(e.name)) {
      shards.push({ file: e.name, ...JSON.parse(await Deno.readTextFile(`${out}/${e.name}`)) });
    }
  }
  shards.sort((a, b) => a.file.localeCompare(b.file, "en", { numeric: true }));
  await writeJsonAtomic(`${out}/run.json`, {
    task: "merge",
    of: id.task,
    config: id,
    images: items.length,
    shards,
    shardSeconds: shards.reduce((s, r) => s + (r.seconds ?? 0), 0),
    staleTempFilesRemoved: removed,
    versions: versions(),
    next: id.task === "guide" ? `deno task evaluate --images ${out}` : undefined,
  });
  console.error(
    `merge: ${out} complete, ${items.length} images from ${shards.length} shard records; grids written` +
      (removed ? `; removed ${removed} stale temp files` : ""),
  );
}
