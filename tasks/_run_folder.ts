/**
 * The output folder of a sampling run as a set of per-image files, for sharding and resume:
 * which images this shard still has to make (a file that is missing, empty or not a complete PNG
 * of the run's size is made again), writing finished batches, and reading images back.
 * @module
 */
import { claimRunFolder, type Shard, shardPositions } from "../lib/shard.ts";
import { decodePng, encodePng, writeFileAtomic } from "../lib/io/png.ts";
import { toTiles } from "../lib/io/outputs.ts";
import type { BatchEvent, ImageShape } from "../lib/sampler/loop.ts";
import { progress } from "../lib/progress.ts";

/** One image of a run: its seed and its file, relative to the run folder. */
export interface RunItem {
  seed: number;
  file: string;
}

/** What this shard has to do. */
export interface RunPlan {
  /** Positions (into the run's items) of this shard. */
  mine: number[];
  /** Those of them not yet written (missing or damaged files). */
  todo: number[];
  /** Files of this shard that existed but were damaged (remade now), with why. */
  damaged: { file: string; why: string }[];
  /** sha256 of the folder's config.json (shard records carry it). */
  configSha256: string;
}

/** More images than this in one run get a warning (time, disk, and a shard hint). */
export const LARGE_RUN = 100_000;

/** Warns on stderr when a run is large: it takes long, and sharding exists. */
export function warnLargeRun(task: string, images: number): void {
  if (images <= LARGE_RUN) return;
  console.error(
    `warning: ${task}: ${images} images in this run (more than ${LARGE_RUN}); at a few images ` +
      `per second per CPU machine that is days: split it with --shard i/n over several ` +
      `machines (README "Sharding, resume, clusters"); finished images are kept on rerun`,
  );
}

/**
 * Why an existing image file cannot be kept (empty, not a complete PNG, another size), or
 * undefined when it is a finished image. A cheap check: the PNG is decoded.
 */
export async function damage(path: string, shape?: ImageShape): Promise<string | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    return `unreadable (${(e as Error).message})`;
  }
  if (bytes.length === 0) return "empty (0 bytes)";
  let png;
  try {
    png = decodePng(bytes);
  } catch {
    return `not a complete PNG (${bytes.length} bytes)`;
  }
  if (shape && (png.width !== shape.w || png.height !== shape.h)) {
    return `${png.width}x${png.height}, the run's images are ${shape.w}x${shape.h}`;
  }
  return undefined;
}

/**
 * Claims the folder for `identity` and lists this shard's items still to make: missing files,
 * and existing ones that are damaged (checked, named on stderr, made again).
 */
export async function planRun(
  out: string,
  identity: unknown,
  items: RunItem[],
  shard: Shard,
  shape?: ImageShape,
): Promise<RunPlan> {
  const configSha256 = await claimRunFolder(out, identity);
  const mine = shardPositions(items.length, shard);
  const present = await filesPresent(out, mine.map((p) => items[p].file));
  const todo: number[] = [];
  const damaged: RunPlan["damaged"] = [];
  // a large folder takes a while to check: say so (count, rate, ETA)
  const tick = present.size > LARGE_RUN
    ? progress("checking finished images", present.size)
    : undefined;
  let checked = 0;
  for (const p of mine) {
    if (!present.has(items[p].file)) {
      todo.push(p);
      continue;
    }
    tick?.(++checked);
    const why = await damage(`${out}/${items[p].file}`, shape);
    if (why) {
      todo.push(p);
      damaged.push({ file: items[p].file, why });
    }
  }
  if (damaged.length) {
    console.error(
      `note: ${damaged.length} finished image file(s) in ${out} are damaged and are made again: ` +
        damaged.slice(0, 10).map((d) => `${d.file} (${d.why})`).join(", ") +
        (damaged.length > 10 ? ", ..." : ""),
    );
  }
  return { mine, todo, damaged, configSha256 };
}

/**
 * Which of `files` (relative to `out`) exist as files: one directory listing per folder instead
 * of one stat per file, so a fresh run of a million seeds starts at once.
 */
async function filesPresent(out: string, files: string[]): Promise<Set<string>> {
  const dirs = new Set(files.map((f) => f.slice(0, Math.max(0, f.lastIndexOf("/")))));
  const present = new Set<string>();
  for (const dir of dirs) {
    try {
      for await (const e of Deno.readDir(dir ? `${out}/${dir}` : out)) {
        if (e.isFile || e.isSymlink) present.add(dir ? `${dir}/${e.name}` : e.name);
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  const wanted = new Set(files);
  for (const f of present) if (!wanted.has(f)) present.delete(f);
  return present;
}

/** An onBatch hook writing each finished image to its file (atomically). `todo[i]` maps the
 * sampler's item i to the run position. */
export function batchWriter(out: string, items: RunItem[], todo: number[], shape: ImageShape) {
  return async (ev: BatchEvent) => {
    const tiles = toTiles(ev.x, ev.items.length, shape, "pm1");
    for (let k = 0; k < ev.items.length; k++) {
      const item = items[todo[ev.items[k]]];
      await writeFileAtomic(`${out}/${item.file}`, encodePng(tiles[k], shape.w, shape.h));
    }
  };
}

/** Reads images back (PNG -> [-1, 1], exactly the values the files hold), concatenated. */
export async function readImages(
  out: string,
  items: RunItem[],
  shape: ImageShape,
): Promise<Float32Array> {
  const per = shape.c * shape.h * shape.w, hw = shape.h * shape.w;
  const x = new Float32Array(items.length * per);
  for (let i = 0; i < items.length; i++) {
    const path = `${out}/${items[i].file}`;
    let png;
    try {
      png = decodePng(await Deno.readFile(path));
    } catch (e) {
      throw new Error(
        `${path} cannot be read back: ${(e as Error).message} Rerun the same command ` +
          `(a damaged image is made again) or delete the file`,
      );
    }
    if (png.width !== shape.w || png.height !== shape.h) {
      throw new Error(
        `${path} is ${png.width}x${png.height}, the run's images are ${shape.w}x${shape.h}`,
      );
    }
    for (let p = 0; p < hw; p++) {
      for (let c = 0; c < shape.c; c++) x[i * per + c * hw + p] = png.rgb[p * 3 + c] / 127.5 - 1;
    }
  }
  return x;
}

/** Items whose files are missing, and those whose files are damaged (with why). */
export async function checkItems(
  out: string,
  items: RunItem[],
  shape?: ImageShape,
): Promise<{ missing: RunItem[]; damaged: { item: RunItem; why: string }[] }> {
  const missing: RunItem[] = [];
  const damaged: { item: RunItem; why: string }[] = [];
  const present = await filesPresent(out, items.map((it) => it.file));
  for (const it of items) {
    if (!present.has(it.file)) missing.push(it);
    else {
      const why = await damage(`${out}/${it.file}`, shape);
      if (why) damaged.push({ item: it, why });
    }
  }
  return { missing, damaged };
}

/** Items whose files are missing. */
export async function missingItems(out: string, items: RunItem[]): Promise<RunItem[]> {
  return (await checkItems(out, items)).missing;
}

/** The folder's run.json of an earlier run, parsed, or undefined. */
export async function previousRunJson(out: string): Promise<unknown> {
  try {
    return JSON.parse(await Deno.readTextFile(`${out}/run.json`));
  } catch {
    return undefined;
  }
}
