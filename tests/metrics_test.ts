// The metrics of lib/metrics against the reference implementations (tools/metrics_reference.py:
// pytorch-fid's scipy sqrtm FD, torch-fidelity's IS and precision/recall), and their identities.
import assert from "node:assert/strict";
import fc from "fast-check";
import { congruence, pivotedCholesky, symmetricEigenvalues } from "../lib/metrics/_linalg.ts";
import { frechetDistance } from "../lib/metrics/frechet.ts";
import { inceptionScore } from "../lib/metrics/inception_score.ts";
import { numpyPermutation } from "../lib/metrics/numpy_permutation.ts";
import { precisionRecall } from "../lib/metrics/precision_recall.ts";
import {
  decodeReferenceFeatures,
  encodeReferenceFeatures,
  referenceCacheName,
  type ReferenceKey,
} from "../lib/metrics/reference_cache.ts";
import { featureStatistics, MomentAccumulator } from "../lib/metrics/statistics.ts";
import { targetAccuracy } from "../lib/metrics/target_accuracy.ts";
import {
  checksum,
  classLogits,
  type LogitsSpec,
  mixedSet,
  type MixedSetSpec,
} from "./_metric_sets.ts";

const FIXTURES = new URL("./fixtures/metrics/", import.meta.url);
const fdFixture = JSON.parse(
  await Deno.readTextFile(new URL("frechet_precision_recall.json", FIXTURES)),
) as {
  cases: Array<{
    name: string;
    real: MixedSetSpec;
    fake: MixedSetSpec;
    checksum: { real: number; fake: number };
    first: { real: number[]; fake: number[] };
    traceReal: number;
    traceFake: number;
    meanTerm: number;
    fdPytorchFid: number;
    fdTorchFidelity: number;
    precisionRecallTorchFidelity?: [number, number];
    precisionRecallFloat64?: [number, number];
  }>;
  collapsed: {
    real: MixedSetSpec;
    n: number;
    cases: Array<{ point: string; torchFidelity: [number, number]; float64: [number, number] }>;
  };
};
const isFixture = JSON.parse(
  await Deno.readTextFile(new URL("inception_score.json", FIXTURES)),
) as {
  cases: Array<{
    logits: LogitsSpec;
    checksum: number;
    shuffled: { mean: number; std: number; scores: number[] };
    ordered: { mean: number; std: number; scores: number[] };
  }>;
  permutations: Array<{ n: number; seed: number; first: number[]; weightedSum: number }>;
};

/** |a - b| <= tol * max(|b|, floor). */
function close(a: number, b: number, tol: number, what: string, floor = 1e-12): void {
  assert.ok(
    Math.abs(a - b) <= tol * Math.max(Math.abs(b), floor),
    `${what}: got ${a}, reference ${b} (relative error ${Math.abs(a - b) / Math.abs(b)})`,
  );
}

const sets = new Map<string, { real: Float32Array; fake: Float32Array }>();
function setsOf(c: (typeof fdFixture.cases)[number]) {
  if (!sets.has(c.name)) sets.set(c.name, { real: mixedSet(c.real), fake: mixedSet(c.fake) });
  return sets.get(c.name)!;
}

Deno.test("the fixture feature sets and logits rebuild bit for bit", () => {
  for (const c of fdFixture.cases) {
    const { real, fake } = setsOf(c);
    assert.deepEqual(Array.from(real.subarray(0, 4)), c.first.real, c.name);
    assert.deepEqual(Array.from(fake.subarray(0, 4)), c.first.fake, c.name);
    close(checksum(real), c.checksum.real, 1e-12, `${c.name} real checksum`);
    close(checksum(fake), c.checksum.fake, 1e-12, `${c.name} fake checksum`);
  }
  for (const c of isFixture.cases) close(checksum(classLogits(c.logits)), c.checksum, 1e-12, "IS");
});

Deno.test("Frechet distance matches pytorch-fid (scipy sqrtm) and torch-fidelity within 1e-3", () => {
  for (const c of fdFixture.cases) {
    const { real, fake } = setsOf(c);
    const sr = featureStatistics(real, c.real.n, c.real.dim);
    const sf = featureStatistics(fake, c.fake.n, c.fake.dim);
    const fd = frechetDistance(sf, sr);
    close(fd.meanTerm, c.meanTerm, 1e-9, `${c.name} mean term`);
    let tr = 0;
    for (let i = 0; i < sr.dim; i++) tr += sr.cov[i * sr.dim + i];
    close(tr, c.traceReal, 1e-9, `${c.name} trace`);
    close(fd.value, c.fdPytorchFid, 1e-3, `${c.name} FD vs pytorch-fid`);
    close(fd.value, c.fdTorchFidelity, 1e-3, `${c.name} FD vs torch-fidelity`);
    // Symmetric in its arguments up to rounding.
    close(frechetDistance(sr, sf).value, fd.value, 1e-6, `${c.name} symmetry`);
  }
});

Deno.test("FD of a set with itself is ~0 relative to the trace, singular covariances included", () => {
  for (const c of fdFixture.cases) {
    const { real } = setsOf(c);
    const s = featureStatistics(real, c.real.n, c.real.dim);
    const fd = frechetDistance(s, s);
    const tr = 2 * fd.traceSqrt;
    assert.ok(Math.abs(fd.value) < 1e-6 * tr, `${c.name}: FD(x, x) = ${fd.value}, trace ${tr}`);
    if (c.real.n <= c.real.dim) assert.equal(fd.rank1, c.real.n - 1, `${c.name} rank`);
  }
});

Deno.test("precision/recall (k = 3) match torch-fidelity's formula", () => {
  for (const c of fdFixture.cases) {
    if (!c.precisionRecallFloat64) continue;
    const { real, fake } = setsOf(c);
    const pr = precisionRecall(real, c.real.n, fake, c.fake.n, c.real.dim);
    assert.deepEqual([pr.precision, pr.recall], c.precisionRecallFloat64, c.name);
    close(pr.precision, c.precisionRecallTorchFidelity![0], 1e-3, `${c.name} precision`);
    close(pr.recall, c.precisionRecallTorchFidelity![1], 1e-3, `${c.name} recall`);
  }
});

Deno.test("collapsed generated set: radii 0, so recall counts exact copies only (<=)", () => {
  // Convention (torch-fidelity, NVlabs): inside means distance <= radius. A generated set of n
  // identical points has every k-NN radius 0, so recall = share of real points equal to it, and
  // precision is all-or-nothing: 1 when the point lies in some real ball.
  const spec = fdFixture.collapsed.real;
  const real = mixedSet(spec);
  const d = spec.dim, n = fdFixture.collapsed.n;
  const points: Record<string, Float32Array> = {
    real0: real.slice(0, d),
    realMean: Float32Array.from(featureStatistics(real, spec.n, d).mean),
    far: real.slice(0, d).map((v) => v + 100),
  };
  for (const c of fdFixture.collapsed.cases) {
    const fake = new Float32Array(n * d);
    for (let i = 0; i < n; i++) fake.set(points[c.point], i * d);
    const pr = precisionRecall(real, spec.n, fake, n, d);
    assert.deepEqual([pr.precision, pr.recall], c.float64, c.point);
    close(pr.recall, c.torchFidelity[1], 1e-3, `${c.point} recall`, 1e-9);
  }
  // The exact-copy case: one real point equals the collapse point, so recall is 1 / n_real.
  const copy = fdFixture.collapsed.cases.find((c) => c.point === "real0")!;
  assert.deepEqual(copy.float64, [1, 1 / spec.n]);
});

Deno.test("precision/recall: identical sets give 1, 1; too few samples for k is an error", () => {
  const x = mixedSet({ ...fdFixture.collapsed.real, n: 50 });
  const pr = precisionRecall(x, 50, x, 50, fdFixture.collapsed.real.dim, { k: 3 });
  assert.deepEqual([pr.precision, pr.recall], [1, 1]);
  assert.throws(
    () => precisionRecall(x.subarray(0, 3 * 64), 3, x, 50, 64),
    /real set has 3 samples; k = 3 neighbours need at least 4/,
  );
});

Deno.test("Inception Score matches torch-fidelity, with its shuffle and without", () => {
  for (const c of isFixture.cases) {
    const logits = classLogits(c.logits);
    const { n, classes } = c.logits;
    for (const [mode, ref] of [["shuffled", c.shuffled], ["ordered", c.ordered]] as const) {
      const is = inceptionScore(logits, n, classes, {
        shuffleSeed: mode === "shuffled" ? 2020 : null,
      });
      close(is.mean, ref.mean, 1e-9, `n=${n} ${mode} mean`);
      close(is.std, ref.std, 1e-6, `n=${n} ${mode} std`);
      is.scores.forEach((s, i) => close(s, ref.scores[i], 1e-9, `n=${n} ${mode} split ${i}`));
    }
  }
  assert.throws(() => inceptionScore(new Float32Array(20), 2, 10), /splits must be .* 1\.\.n/);
});

Deno.test("numpyPermutation reproduces numpy's RandomState(seed).permutation(n)", () => {
  for (const p of isFixture.permutations) {
    const perm = numpyPermutation(p.n, p.seed);
    assert.deepEqual(Array.from(perm.subarray(0, p.first.length)), p.first, `n=${p.n}`);
    let s = 0;
    for (let i = 0; i < p.n; i++) s += (i % 97 + 1) * perm[i];
    assert.equal(s, p.weightedSum, `n=${p.n} weighted sum`);
  }
});

Deno.test("streaming statistics do not depend on the batch size (bit for bit)", () => {
  const spec = fdFixture.cases[0].real;
  const x = mixedSet({ ...spec, n: 120 });
  const d = spec.dim;
  const whole = featureStatistics(x, 120, d);
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 30 }),
      (sizes) => {
        const acc = new MomentAccumulator(d);
        let at = 0;
        for (let i = 0; at < 120; i++) {
          const m = Math.min(sizes[i % sizes.length], 120 - at);
          acc.add(x.subarray(at * d, (at + m) * d));
          at += m;
        }
        const s = acc.statistics();
        assert.deepEqual(s.mean, whole.mean);
        assert.deepEqual(s.cov, whole.cov);
      },
    ),
    { numRuns: 30 },
  );
});

Deno.test("statistics match a two-pass float64 computation", () => {
  const spec = fdFixture.cases[0].real;
  const n = 200, d = spec.dim;
  const x = mixedSet({ ...spec, n, shift: 1000 }); // a large offset: the shifted sums keep digits
  const s = featureStatistics(x, n, d);
  for (let j = 0; j < d; j += 7) {
    let m = 0;
    for (let i = 0; i < n; i++) m += x[i * d + j];
    m /= n;
    close(s.mean[j], m, 1e-12, `mean ${j}`);
    for (let k = 0; k < d; k += 5) {
      let mk = 0;
      for (let i = 0; i < n; i++) mk += x[i * d + k];
      mk /= n;
      let c = 0;
      for (let i = 0; i < n; i++) c += (x[i * d + j] - m) * (x[i * d + k] - mk);
      close(s.cov[j * d + k], c / (n - 1), 1e-9, `cov ${j},${k}`, 1e-3);
    }
  }
  assert.throws(() => new MomentAccumulator(3).statistics(), /at least 2 samples/);
});

Deno.test("symmetric eigenvalues and pivoted Cholesky recover a known spectrum", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 24 }),
      fc.integer({ min: 0, max: 1000 }),
      fc.integer({ min: 0, max: 5 }),
      (n, seed, zeros) => {
        // A = Q diag(lambda) Q^T with Q a Householder reflection; the last `zeros` lambdas are 0.
        const u = mixedSet({ ...fdFixture.cases[0].real, n: 1, dim: n, latentSeed: seed });
        let norm = 0;
        for (const v of u) norm += v * v;
        const lambda = Array.from({ length: n }, (_, i) => i >= n - zeros ? 0 : 1 + i * 0.5);
        const q = (i: number, j: number) => (i === j ? 1 : 0) - 2 * u[i] * u[j] / norm;
        const a = new Float64Array(n * n);
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < n; j++) {
            let s = 0;
            for (let k = 0; k < n; k++) s += q(i, k) * lambda[k] * q(j, k);
            a[i * n + j] = s;
          }
        }
        const eig = symmetricEigenvalues(a, n);
        const want = [...lambda].sort((x, y) => x - y);
        eig.forEach((v, i) =>
          assert.ok(Math.abs(v - want[i]) < 1e-9, `eig ${i}: ${v} vs ${want[i]}`)
        );
        const { l, rank } = pivotedCholesky(a, n);
        assert.equal(rank, lambda.filter((v) => v > 0).length);
        // L L^T = A, and L^T I L has the non-zero spectrum of A.
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < n; j++) {
            let s = 0;
            for (let k = 0; k < rank; k++) s += l[i * rank + k] * l[j * rank + k];
            assert.ok(Math.abs(s - a[i * n + j]) < 1e-9);
          }
        }
        if (rank > 0) {
          const id = new Float64Array(n * n);
          for (let i = 0; i < n; i++) id[i * n + i] = 1;
          const m = symmetricEigenvalues(congruence(id, l, n, rank), rank);
          const nz = want.filter((v) => v > 0);
          m.forEach((v, i) => assert.ok(Math.abs(v - nz[i]) < 1e-9));
        }
      },
    ),
    { numRuns: 40 },
  );
});

Deno.test("reference cache files round-trip and their names follow the key", () => {
  const d = 5, n = 7;
  const x = mixedSet({ ...fdFixture.cases[0].real, n, dim: d });
  const key: ReferenceKey = {
    features: { sha256: "ab", layer: "penultimate" },
    reference: { kind: "cifar10", split: "test" },
    n,
  };
  const entry = { key, stats: featureStatistics(x, n, d), features: x };
  const back = decodeReferenceFeatures(encodeReferenceFeatures(entry), "mem");
  assert.deepEqual(back.key, key);
  assert.deepEqual(back.stats, entry.stats);
  assert.deepEqual(back.features, x);
  const reordered = { n, reference: { split: "test", kind: "cifar10" }, features: key.features };
  assert.equal(referenceCacheName(reordered), referenceCacheName(key));
  assert.notEqual(referenceCacheName({ ...key, n: 8 }), referenceCacheName(key));
  assert.throws(
    () => decodeReferenceFeatures(new Uint8Array(20), "x.bin"),
    /x\.bin is not a usable/,
  );
});

Deno.test("target accuracy: overall, per class, and classes without images", () => {
  const logits = Float32Array.of(5, 0, 0, /**/ 0, 5, 0, /**/ 0, 5, 0, /**/ 0, 0, 5);
  const acc = targetAccuracy(logits, [0, 1, 0, 2], 3);
  assert.equal(acc.overall, 0.75);
  assert.deepEqual(acc.perClass, [0.5, 1, 1]);
  assert.deepEqual(acc.counts, [2, 1, 1]);
  assert.deepEqual(targetAccuracy(logits, [0, 1, 1, 1], 3).perClass, [1, 2 / 3, null]);
  assert.throws(() => targetAccuracy(logits, [0, 1, 0, 3], 3), /label 3 is 3/);
});
