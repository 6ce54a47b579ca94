/**
 * PNG encode/decode (via pngjs), float CHW → byte HWC quantisation, image grids and atomic writes.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { dirname } from "node:path";
// Full npm: specifier so mod.ts also runs from a URL, where deno.json's import map is absent.
// deno-lint-ignore no-import-prefix
import { PNG } from "npm:pngjs@7.0.0";

/**
 * Encodes 8-bit RGB pixels as a PNG (written by pngjs as 8-bit RGBA with alpha 255).
 *
 * @param rgb `height * width * 3` bytes, HWC (row-major pixels, R G B per pixel).
 */
export function encodePng(rgb: Uint8Array, width: number, height: number): Uint8Array {
  checkSize("encodePng", width, height);
  if (rgb.length !== width * height * 3) {
    throw new Error(
      `encodePng: rgb has ${rgb.length} bytes but a ${width}x${height} RGB image needs ` +
        `${width * height * 3} (width*height*3, HWC); check the width/height or the buffer.`,
    );
  }
  const png = new PNG({ width, height });
  const rgba = png.data;
  for (let p = 0, i = 0, o = 0; p < width * height; p++, i += 3, o += 4) {
    rgba[o] = rgb[i];
    rgba[o + 1] = rgb[i + 1];
    rgba[o + 2] = rgb[i + 2];
    rgba[o + 3] = 255;
  }
  const out = PNG.sync.write(png);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Decodes a PNG to 8-bit RGB (HWC). pngjs expands palette/grey/16-bit input to 8-bit RGBA;
 * the alpha channel is dropped, not composited.
 */
export function decodePng(bytes: Uint8Array): { rgb: Uint8Array; width: number; height: number } {
  let png: { width: number; height: number; data: Uint8Array };
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (e) {
    throw new Error(
      `decodePng: could not decode ${bytes.length} bytes as PNG: ` +
        `${e instanceof Error ? e.message : String(e)}. Check that the file is a complete PNG.`,
    );
  }
  const { width, height, data } = png;
  const rgb = new Uint8Array(width * height * 3);
  for (let p = 0, i = 0, o = 0; p < width * height; p++, i += 4, o += 3) {
    rgb[o] = data[i];
    rgb[o + 1] = data[i + 1];
    rgb[o + 2] = data[i + 2];
  }
  return { rgb, width, height };
}

/**
 * Converts one float CHW image to HWC bytes, quantising like torchvision `save_image` and
 * diffusers `numpy_to_pil`: v = x for `"01"` or v = (x + 1) / 2 for `"pm1"`, then clamp v to
 * [0, 1], then byte = round(v * 255) with ties rounded up (`Math.round`, torchvision's
 * `mul(255).add(0.5)` then truncate). So in pm1: -1 → 0, 0 → 128 (127.5 rounds up), 1 → 255,
 * and out-of-range values saturate. This choice shifts pixel values by up to half a level,
 * which changes FID/IS and other metrics computed from the saved images: keep it consistent.
 *
 * @param x buffer holding the image at `offset` as `c` planes of `h x w` (row-major).
 * @returns `h * w * c` bytes, HWC.
 * @throws on a NaN value (e.g. a diverged sampler), naming its index; ±Infinity saturates.
 */
export function chwToHwcBytes(
  x: Float32Array,
  offset: number,
  c: number,
  h: number,
  w: number,
  range: "pm1" | "01",
): Uint8Array {
  if (range !== "pm1" && range !== "01") {
    throw new Error(`chwToHwcBytes: range must be "pm1" or "01", got ${JSON.stringify(range)}.`);
  }
  checkSize("chwToHwcBytes", w, h);
  if (!Number.isInteger(c) || c < 1) {
    throw new Error(`chwToHwcBytes: channel count must be a positive integer, got ${c}.`);
  }
  const plane = h * w;
  if (!Number.isInteger(offset) || offset < 0 || offset + c * plane > x.length) {
    throw new Error(
      `chwToHwcBytes: an image of ${c}x${h}x${w} at offset ${offset} needs elements ` +
        `[${offset}, ${offset + c * plane}) but the buffer has ${x.length}; check offset/shape.`,
    );
  }
  const pm1 = range === "pm1";
  const out = new Uint8Array(plane * c);
  for (let ch = 0; ch < c; ch++) {
    const base = offset + ch * plane;
    for (let p = 0; p < plane; p++) {
      const value = x[base + p];
      if (Number.isNaN(value)) {
        throw new Error(
          `chwToHwcBytes: NaN at element ${base + p} (channel ${ch}, pixel ${p}); ` +
            `the image is invalid (e.g. a diverged sampler), fix the producer before saving.`,
        );
      }
      let v = pm1 ? (value + 1) / 2 : value;
      v = v < 0 ? 0 : v > 1 ? 1 : v;
      out[p * c + ch] = Math.round(v * 255);
    }
  }
  return out;
}

/**
 * Tiles equally sized HWC RGB images into one grid, row-major, like torchvision `make_grid`:
 * `cols` is clamped to the image count, each tile sits at
 * `(pad + col * (width + pad), pad + row * (height + pad))`, and the border, gaps and empty cells
 * are filled with `padValue`.
 *
 * @returns the grid, `cols * (width + pad) + pad` wide and `rows * (height + pad) + pad` tall.
 */
export function makeGrid(
  images: Uint8Array[],
  width: number,
  height: number,
  cols: number,
  pad = 2,
  padValue = 255,
): { rgb: Uint8Array; width: number; height: number } {
  if (images.length === 0) {
    throw new Error("makeGrid: images is empty; pass at least one HWC RGB image.");
  }
  checkSize("makeGrid", width, height);
  if (!Number.isInteger(cols) || cols < 1) {
    throw new Error(`makeGrid: cols must be a positive integer, got ${cols}.`);
  }
  if (!Number.isInteger(pad) || pad < 0) {
    throw new Error(`makeGrid: pad must be a non-negative integer, got ${pad}.`);
  }
  if (!Number.isInteger(padValue) || padValue < 0 || padValue > 255) {
    throw new Error(`makeGrid: padValue must be an integer in 0..255, got ${padValue}.`);
  }
  const tileBytes = width * height * 3;
  images.forEach((img, i) => {
    if (img.length !== tileBytes) {
      throw new Error(
        `makeGrid: image ${i} has ${img.length} bytes but every tile must be ${width}x${height} ` +
          `RGB = ${tileBytes} bytes (HWC).`,
      );
    }
  });
  const ncols = Math.min(cols, images.length);
  const nrows = Math.ceil(images.length / ncols);
  const gw = ncols * (width + pad) + pad;
  const gh = nrows * (height + pad) + pad;
  const rgb = new Uint8Array(gw * gh * 3).fill(padValue);
  images.forEach((img, i) => {
    const x0 = pad + (i % ncols) * (width + pad);
    const y0 = pad + Math.floor(i / ncols) * (height + pad);
    for (let y = 0; y < height; y++) {
      rgb.set(img.subarray(y * width * 3, (y + 1) * width * 3), ((y0 + y) * gw + x0) * 3);
    }
  });
  return { rgb, width: gw, height: gh };
}

/**
 * Writes a file atomically: writes `path.tmp-<pid>-<random>` in the same directory, then renames
 * it over `path`, so readers never see a partial file. Creates missing parent directories and
 * removes the temporary file if the write fails.
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(
      `writeFileAtomic: could not write ${path} (via ${tmp}): ` +
        `${
          e instanceof Error ? e.message : String(e)
        }. Check that the directory is writable and has free space.`,
    );
  }
}

/** Throws unless width and height are positive integers. */
function checkSize(fn: string, width: number, height: number): void {
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
    throw new Error(
      `${fn}: width and height must be positive integers, got width=${width}, height=${height}.`,
    );
  }
}
