/**
 * Task `merge`: after the shards of a sharded `sample` or `guide` run have finished, checks that
 * every image is there, removes temp files left by killed workers, and writes the grids and a
 * combined run.json.
 *   deno task merge --out <run folder>
 * @module
 */
import { writeGrid, writeJsonAtomic } from "../lib/io/outputs.ts";
import { configSha256, removeStaleTemps } from "../lib/shard.ts";
import { parseSeeds } from "../lib/random.ts";
import { parseFlags, UsageError, versions } from "./_args.ts";
import { checkItems, readImages, type RunItem } from "./_run_folder.ts";

interface Identity {
  task: "sample" | "guide";
  /** Compact ranges ("0-999"), or a list in folders of earlier versions. */
  seeds: string | number[];
  classes?: string[];
  shape: [number, number, number];
}

/** The items a run folder's config.json promises. */
export function itemsOf(id: Identity): RunItem[] {
  const seeds = typeof id.seeds === "string" ? parseSeeds(id.seeds) : id.seeds;
  if (id.task === "guide") {
    return (id.classes ?? []).flatMap((name) =>
      seeds.map((seed) => ({ seed, file: `images/${name}/${seed}.png` }))
    );
  }
  return seeds.map((seed) => ({ seed, file: `images/${seed}.png` }));
}

/** Usage text of `merge`. */
export const MERGE_USAGE = `deno task merge --out <run folder>
  after every shard of a sharded sample or guide run (--shard i/n) has finished: checks that
  every image is there and readable and that every shard record belongs to the folder's
  config.json, removes temp files of killed workers, writes the grids and a combined run.json
  --out <dir>   the --out of the sharded run`;

/** Runs `merge`. */
export async function mergeTask(args: string[]): Promise<void> {
  const f = parseFlags("merge", args, { out: { type: "string" }, help: { type: "boolean" } });
  if (f.help) {
    console.log(MERGE_USAGE);
    return;
  }
  if (!f.out) throw new UsageError("merge needs --out <run folder> (the --out of the sharded run)");
  const out = f.out.replace(/\/+$/, "");
  let id: Identity;
  let configText: string;
  try {
    configText = await Deno.readTextFile(`${out}/config.json`);
    id = JSON.parse(configText);
  } catch {
    throw new UsageError(
      `${out} is not a run folder (no readable config.json); pass the --out of a sample or guide run`,
    );
  }
  const items = itemsOf(id);
  const [c, h, w] = id.shape;
  const shape = { c, h, w };
  const { missing, damaged } = await checkItems(out, items, shape);
  if (missing.length || damaged.length) {
    const list = (files: string[]) =>
      files.slice(0, 10).join(", ") + (files.length > 10 ? ", ..." : "");
    throw new Error(
      `${out} is incomplete: ` +
        [
          missing.length
            ? `${missing.length} of ${items.length} images missing (${
              list(missing.map((m) => m.file))
            })`
            : "",
          damaged.length
            ? `${damaged.length} damaged (${list(damaged.map((d) => `${d.item.file}: ${d.why}`))})`
            : "",
        ].filter(Boolean).join("; ") +
        `; rerun the shards that own them with the same flags (finished images are kept, ` +
        `damaged ones are made again)`,
    );
  }
  const shards = await shardRecords(out, configSha256(configText));
  const removed = await removeStaleTemps(out);
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

/**
 * The shard records of a run folder, each checked against its config.json: a record written by
 * a worker of another configuration (or by a version that did not record it) is an error naming
 * the record.
 */
async function shardRecords(out: string, sha: string) {
  // deno-lint-ignore no-explicit-any
  const shards: any[] = [];
  for await (const e of Deno.readDir(out)) {
    if (!/^run\.shard-\d+-of-\d+\.json$/.test(e.name)) continue;
    const path = `${out}/${e.name}`;
    let rec;
    try {
      rec = JSON.parse(await Deno.readTextFile(path));
    } catch (err) {
      throw new Error(`${path} is not valid JSON (${(err as Error).message}); rerun that shard`);
    }
    if (rec.configSha256 !== sha) {
      throw new Error(
        `${path} was written for another configuration than ${out}/config.json (its ` +
          `configSha256 is ${rec.configSha256 ?? "absent"}, config.json's is ${sha}): a worker ` +
          `with other flags wrote into this folder; delete that record and rerun its shard with ` +
          `the flags of config.json`,
      );
    }
    shards.push({ file: e.name, ...rec });
  }
  return shards.sort((a, b) => a.file.localeCompare(b.file, "en", { numeric: true }));
}
