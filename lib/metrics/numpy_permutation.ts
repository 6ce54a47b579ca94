/**
 * `numpy.random.RandomState(seed).permutation(n)`, reproduced exactly: torch-fidelity shuffles
 * the samples with it (seed 2020) before splitting them for the Inception Score, so the same
 * permutation makes our IS comparable split for split.
 *
 * numpy's legacy path: MT19937 seeded by `init_genrand(seed)` (Matsumoto and Nishimura 1998),
 * `permutation(n)` = `shuffle(arange(n))`, a Fisher-Yates shuffle from the last element down,
 * each index drawn by `random_interval(i)`: 32-bit draws masked to the next power of two minus
 * one, rejected while above i.
 * @module
 */

const N = 624;
const M = 397;

/** MT19937 with numpy's integer seeding; `next()` returns the tempered 32-bit output. */
class Mt19937 {
  private mt = new Uint32Array(N);
  private index = N;

  constructor(seed: number) {
    this.mt[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = this.mt[i - 1];
      this.mt[i] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + i) >>> 0;
    }
  }

  next(): number {
    if (this.index >= N) this.twist();
    let y = this.mt[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private twist(): void {
    const mt = this.mt;
    for (let k = 0; k < N; k++) {
      const y = (mt[k] & 0x80000000) | (mt[(k + 1) % N] & 0x7fffffff);
      mt[k] = mt[(k + M) % N] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.index = 0;
  }
}

/**
 * The permutation `numpy.random.RandomState(seed).permutation(n)` returns.
 *
 * @param n length, 0 <= n < 2^32.
 * @param seed integer seed in 0..2^32-1 (torch-fidelity uses 2020).
 * @example
 * ```ts
 * numpyPermutation(5, 2020); // the same order as numpy's RandomState(2020).permutation(5)
 * ```
 */
export function numpyPermutation(n: number, seed: number): Uint32Array {
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 32) {
    throw new Error(`numpyPermutation: n must be an integer in 0..2^32-1, got ${n}`);
  }
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) {
    throw new Error(`numpyPermutation: seed must be an integer in 0..2^32-1, got ${seed}`);
  }
  const rng = new Mt19937(seed);
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i >= 1; i--) {
    let mask = i;
    mask |= mask >>> 1;
    mask |= mask >>> 2;
    mask |= mask >>> 4;
    mask |= mask >>> 8;
    mask |= mask >>> 16;
    let j: number;
    do j = (rng.next() & mask) >>> 0; while (j > i);
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}
