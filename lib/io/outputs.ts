/**
 * Writing a run's image outputs: one PNG per image (`images/<seed>.png`), a grid, and JSON, each
 * written atomically (temp file + rename) so an interrupted run leaves no half-written file.
 * @module
 */
import { chwToHwcBytes, encodePng, makeGrid, writeFileAtomic } from "./png.ts";
import type { ImageShape } from "../sampler/loop.ts";

/** Writes `value` as pretty JSON to `path` atomically. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n"));
}

/** HWC RGB bytes of each image in a concatenated NCHW float array. */
export function toTiles(
  images: Float32Array,
  n: number,
  shape: ImageShape,
  range: "pm1" | "01",
): Uint8Array[] {
  const per = shape.c * shape.h * shape.w;
  return Array.from(
    { length: n },
    (_, i) => chwToHwcBytes(images, i * per, shape.c, shape.h, shape.w, range),
  );
}

/** Writes a grid PNG of `n` images with `cols` columns (default: about square). */
export async function writeGrid(
  path: string,
  images: Float32Array,
  n: number,
  shape: ImageShape,
  range: "pm1" | "01",
  cols?: number,
): Promise<void> {
  const tiles = toTiles(images, n, shape, range);
  const g = makeGrid(tiles, shape.w, shape.h, cols ?? Math.ceil(Math.sqrt(n)));
  await writeFileAtomic(path, encodePng(g.rgb, g.width, g.height));
}

/** Writes `<dir>/<seed>.png` for every image. */
export async function writeImageFiles(
  dir: string,
  images: Float32Array,
  seeds: readonly number[],
  shape: ImageShape,
  range: "pm1" | "01",
): Promise<Uint8Array[]> {
  const tiles = toTiles(images, seeds.length, shape, range);
  for (let i = 0; i < seeds.length; i++) {
    await writeFileAtomic(`${dir}/${seeds[i]}.png`, encodePng(tiles[i], shape.w, shape.h));
  }
  return tiles;
}

/** Writes `<out>/images/<seed>.png` for every image and `<out>/grid.png`. */
export async function writeImageSet(
  out: string,
  images: Float32Array,
  seeds: readonly number[],
  shape: ImageShape,
  range: "pm1" | "01",
  cols?: number,
): Promise<void> {
  const tiles = await writeImageFiles(`${out}/images`, images, seeds, shape, range);
  const g = makeGrid(tiles, shape.w, shape.h, cols ?? Math.ceil(Math.sqrt(seeds.length)));
  await writeFileAtomic(`${out}/grid.png`, encodePng(g.rgb, g.width, g.height));
}
