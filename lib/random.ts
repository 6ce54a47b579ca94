/**
 * Per-image random streams (EDM's `--seeds 0-63` idea): image k draws all its noise, in a fixed
 * order (x_T first, then one z per stochastic step), from a stream seeded by k alone, so the image
 * for seed k is the same whatever the batch size or order.
 *
 * Generator: xoshiro128** (Blackman and Vigna 2018), state seeded from the 32-bit seed through
 * SplitMix32; uniforms on (0, 1) from 53 bits of two draws; normals by Box-Muller (both values of
 * a pair used). The seed -> stream mapping is part of the project's reproducibility contract:
 * change it only with a version bump recorded in run.json (RNG_ID).
 * @module
 */

/** Identifies the generator in run.json. */
export const RNG_ID = "xoshiro128**/splitmix32/box-muller/v1";

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** A stream of uniforms and Gaussians for one seed. */
export class RandomStream {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | undefined;

  /** A stream for the non-negative integer `seed` (< 2^32). */
  constructor(readonly seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) {
      throw new Error(`seed ${seed} is invalid: seeds are integers in 0..4294967295`);
    }
    const sm = splitmix32(seed);
    this.s0 = sm();
    this.s1 = sm();
    this.s2 = sm();
    this.s3 = sm();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Next 32-bit unsigned integer (xoshiro128**). */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    this.s0 >>>= 0, this.s1 >>>= 0, this.s2 >>>= 0, this.s3 >>>= 0;
    return result;
  }

  /** Uniform on the open interval (0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo + 0.5) / 9007199254740992;
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    const u1 = this.uniform(), u2 = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }

  /** Fills `out` with standard normals. */
  fillNormal(out: Float32Array): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = this.normal();
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * Parses a seed list such as "0-63", "5", "0-3,10,20-21" into distinct integers in order.
 * Throws on malformed text, reversed ranges, or duplicates.
 */
export function parseSeeds(text: string): number[] {
  const out: number[] = [];
  for (const part of text.split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) {
      throw new Error(
        `--seeds '${text}' is malformed at '${part}'; write e.g. 0-63 or 0-3,10,20-21`,
      );
    }
    const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new Error(`--seeds range '${part}' runs backwards; write ${b}-${a}`);
    for (let s = a; s <= b; s++) out.push(s);
  }
  if (new Set(out).size !== out.length) throw new Error(`--seeds '${text}' repeats a seed`);
  for (const s of out) new RandomStream(s); // validates range
  return out;
}

/** Standard-normal noise for images `seeds` (one stream each), concatenated. */
export function noiseFor(streams: readonly RandomStream[], perImage: number): Float32Array {
  const out = new Float32Array(streams.length * perImage);
  streams.forEach((s, i) => s.fillNormal(out.subarray(i * perImage, (i + 1) * perImage)));
  return out;
}
