/**
 * Folders of PNG images (generated samples, or any image set) read into the CIFAR-10 byte layout:
 * [n, 3, H, W] bytes, R plane then G then B per image, so generated and real images go through
 * the same conversion (byte / 255) before a network sees them.
 * @module
 */
import { join, relative, sep } from "node:path";
import { decodePng } from "../io/png.ts";

/** A listed PNG: its path relative to the root and its top-level folder ("" at the root). */
export interface PngEntry {
  /** Path relative to the root, with "/" separators. */
  path: string;
  /** First path component when the file sits in a sub-folder, else "". */
  group: string;
}

/**
 * Lists `*.png` files (any letter case) under `root`, recursively, following no symlinks.
 * Order: files are sorted within their folder by natural order (2.png before 10.png), and the
 * top-level folders are interleaved (the first file of each folder, then the second, ...) so
 * that keeping the first n files keeps every class of a class-per-folder run.
 *
 * @throws when `root` does not exist or is not a folder.
 */
export async function listPngs(root: string): Promise<PngEntry[]> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(root);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`image folder '${root}' does not exist; pass a folder of PNG images`);
    }
    throw e;
  }
  if (!info.isDirectory) {
    throw new Error(`'${root}' is a file, not a folder; pass a folder of PNG images`);
  }
  const files: string[] = [];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = join(dir, e.name);
      if (e.isDirectory) await walk(path);
      else if (e.isFile && /\.png$/i.test(e.name)) files.push(relative(root, path));
    }
  };
  await walk(root);
  const collator = new Intl.Collator("en", { numeric: true });
  const groups = new Map<string, string[]>();
  for (const f of files.map((p) => p.split(sep).join("/")).sort(collator.compare)) {
    const parts = f.split("/");
    const group = parts.length > 1 ? parts[0] : "";
    if (!groups.has(group)) groups.set(group, []);
    groups.get(group)!.push(f);
  }
  const lists = [...groups.entries()].sort((a, b) => collator.compare(a[0], b[0]));
  const out: PngEntry[] = [];
  for (let i = 0; out.length < files.length; i++) {
    for (const [group, list] of lists) if (i < list.length) out.push({ path: list[i], group });
  }
  return out;
}

/** Images decoded from PNG files, in the CIFAR-10 byte layout. */
export interface DecodedImages {
  /** [n, 3, height, width] bytes (RGB planes per image). */
  images: Uint8Array;
  /** Number of images. */
  count: number;
}

/**
 * Decodes PNG files to [n, 3, H, W] bytes; alpha is dropped (see {@link decodePng}).
 *
 * @param root folder the entries are relative to.
 * @param shape [3, H, W] the images must have.
 * @param onProgress called with the number of files decoded.
 * @throws naming the file when one does not decode or is not H x W.
 */
export async function decodePngs(
  root: string,
  entries: readonly PngEntry[],
  shape: readonly [number, number, number],
  onProgress?: (done: number) => void,
): Promise<DecodedImages> {
  const [c, h, w] = shape;
  if (c !== 3) {
    throw new Error(
      `the network takes ${c}-channel images; PNG folders are read as RGB (3 channels)`,
    );
  }
  const plane = h * w;
  const images = new Uint8Array(entries.length * 3 * plane);
  for (let i = 0; i < entries.length; i++) {
    const file = join(root, entries[i].path);
    let png: ReturnType<typeof decodePng>;
    try {
      png = decodePng(await Deno.readFile(file));
    } catch (e) {
      throw new Error(`${file}: ${(e as Error).message}`);
    }
    if (png.width !== w || png.height !== h) {
      throw new Error(
        `${file} is ${png.width}x${png.height} but the network takes ${w}x${h} images; ` +
          `evaluate images at the network's size (resizing changes the metrics, so it is not ` +
          `done silently) or remove the file`,
      );
    }
    const base = i * 3 * plane;
    const rgb = png.rgb;
    for (let p = 0; p < plane; p++) {
      images[base + p] = rgb[p * 3];
      images[base + plane + p] = rgb[p * 3 + 1];
      images[base + 2 * plane + p] = rgb[p * 3 + 2];
    }
    onProgress?.(i + 1);
  }
  return { images, count: entries.length };
}
