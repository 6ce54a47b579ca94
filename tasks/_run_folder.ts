/**
 * The output folder of a sampling run as a set of per-image files, for sharding and resume:
 * which images this shard still has to make, writing finished batches, and reading images back.
 * @module
 */
import { claimRunFolder, fileExists, type Shard, shardPositions } from "../lib/shard.ts";
import { decodePng, encodePng, writeFileAtomic } from "../lib/io/png.ts";
import { toTiles } from "../lib/io/outputs.ts";
import type { BatchEvent, ImageShape } from "../lib/sampler/loop.ts";

/** One image of a run: its seed and its file, relative to the run folder. */
export interface RunItem {
  seed: number;
  file: string;
}

/** What this shard has to do. */
export interface RunPlan {
  /** Positions (into the run's items) of this shard. */
  mine: number[];
  /** Those of them not yet written. */
  todo: number[];
}

/** Claims the folder for `identity` and lists this shard's items still missing. */
export async function planRun(
  out: string,
  identity: unknown,
  items: RunItem[],
  shard: Shard,
): Promise<RunPlan> {
  await claimRunFolder(out, identity);
  const mine = shardPositions(items.length, shard);
  const todo: number[] = [];
  for (const p of mine) if (!(await fileExists(`${out}/${items[p].file}`))) todo.push(p);
  return { mine, todo };
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
    const png = decodePng(await Deno.readFile(path));
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

/** Items whose files are missing. */
export async function missingItems(out: string, items: RunItem[]): Promise<RunItem[]> {
  const missing: RunItem[] = [];
  for (const it of items) if (!(await fileExists(`${out}/${it.file}`))) missing.push(it);
  return missing;
}
