#!/usr/bin/env python3
"""Reference values for the metrics of lib/metrics/ (run by hand, writes tests/fixtures/metrics/).

    .venv/bin/python tools/metrics_reference.py

Needs numpy, scipy, torch (CPU) and prdc, pinned in weights/recipes/requirements.txt.
torch-fidelity and pytorch-fid are not installed (their pip dependencies pull CUDA builds of
torch/torchvision); their metric functions are small and are copied below verbatim in substance,
each with its source:

- FD, pytorch-fid: `calculate_frechet_distance` in pytorch_fid/fid_score.py (mseitzer/pytorch-fid,
  v0.3.0): mu, sigma = np.mean / np.cov(rowvar=False) of float64 activations;
  covmean = scipy.linalg.sqrtm(sigma1 @ sigma2) (eps offset retry when not finite, real part).
- FD, torch-fidelity: `fid_statistics_to_metric` in torch_fidelity/metric_fid.py (v0.4):
  tr_covmean = sum(sqrt(eigvals(sigma1 @ sigma2)).real).
- IS, torch-fidelity: `isc_features_to_metric` in torch_fidelity/metric_isc.py (v0.4), logits in,
  shuffle with np.random.RandomState(2020).permutation, splits=10.
- Precision/recall, torch-fidelity: `calculate_precision_recall_full` in
  torch_fidelity/metric_prc.py (v0.4): radii = kthvalue(cdist, k + 1) (self included), inside
  when dist <= radius. Run here in torch float32 as torch-fidelity does, and in float64 numpy.
- Precision/recall, prdc 0.2 (`compute_prdc`, clovaai/generative-evaluation-prdc): the same with
  a strict < (reported for comparison only).

The feature sets are not stored: they are rebuilt from the project's RandomStream
(xoshiro128**/splitmix32, lib/random.ts), ported below, whose uniforms are exact integer
arithmetic, mixed in float64 in a fixed order and rounded to float32, so TypeScript rebuilds the
same bits (tests/_metric_sets.ts; a checksum in each fixture guards this).
"""

import json
import math
import os
import sys
import warnings

import numpy as np
import prdc
import scipy
import scipy.linalg
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "metrics")


# --- lib/random.ts RandomStream, uniforms only -------------------------------------------------
M32 = 0xFFFFFFFF


def _imul(a, b):
    return (a * b) & M32


def _rotl(x, k):
    return ((x << k) | (x >> (32 - k))) & M32


class RandomStream:
    def __init__(self, seed):
        s = seed & M32
        state = []
        for _ in range(4):
            s = (s + 0x9E3779B9) & M32
            z = s
            z = _imul(z ^ (z >> 16), 0x85EBCA6B)
            z = _imul(z ^ (z >> 13), 0xC2B2AE35)
            state.append((z ^ (z >> 16)) & M32)
        if not any(state):
            state[0] = 1
        self.s = state

    def next_u32(self):
        s0, s1, s2, s3 = self.s
        result = _imul(_rotl(_imul(s1, 5), 7), 9)
        t = (s1 << 9) & M32
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = _rotl(s3, 11)
        self.s = [s0, s1, s2, s3]
        return result

    def uniform(self):
        hi = self.next_u32() >> 5
        lo = self.next_u32() >> 6
        return (hi * 67108864 + lo + 0.5) / 9007199254740992


def uniform_matrix(seed, rows, cols):
    """rows x cols values uniform on (-1, 1), row-major from one stream (as Python floats)."""
    r = RandomStream(seed)
    return [[r.uniform() * 2 - 1 for _ in range(cols)] for _ in range(rows)]


def mixed_set(spec):
    """x[i][j] = fround(sum_k (sqrt(3) z[i][k] * scale + shift) * A[k][j] + noise * e[i][j])."""
    n, d, q = spec["n"], spec["dim"], spec["latent"]
    z = uniform_matrix(spec["latentSeed"], n, q)
    a = uniform_matrix(spec["mixSeed"], q, d)
    e = uniform_matrix(spec["noiseSeed"], n, d)
    root3 = math.sqrt(3)
    out = np.empty((n, d), dtype=np.float32)
    for i in range(n):
        lat = [root3 * z[i][k] * spec["scale"] + spec["shift"] for k in range(q)]
        for j in range(d):
            s = 0.0
            for k in range(q):
                s += lat[k] * a[k][j]
            s += spec["noise"] * e[i][j]
            out[i, j] = s
    return out


def class_logits(spec):
    """logit[i][c] = spread * u + (bias when c == floor(i * K / n)): a class-sorted set."""
    n, k = spec["n"], spec["classes"]
    u = uniform_matrix(spec["seed"], n, k)
    out = np.empty((n, k), dtype=np.float32)
    for i in range(n):
        cls = (i * k) // n
        for c in range(k):
            out[i, c] = spec["spread"] * u[i][c] + (spec["bias"] if c == cls else 0.0)
    return out


def checksum(x):
    """sum over i of (i % 97 + 1) * x.flat[i], in float64, for the rebuild check."""
    flat = x.astype(np.float64).ravel()
    w = (np.arange(flat.size) % 97 + 1).astype(np.float64)
    return float(np.dot(w, flat))


# --- the reference formulas ---------------------------------------------------------------------
def stats(x):
    x = x.astype(np.float64)
    return np.mean(x, axis=0), np.cov(x, rowvar=False)


def fd_pytorch_fid(mu1, sigma1, mu2, sigma2, eps=1e-6):
    diff = mu1 - mu2
    with warnings.catch_warnings():  # scipy 1.17 deprecates disp=; pytorch-fid passes it
        warnings.simplefilter("ignore", DeprecationWarning)
        covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    tr_covmean = np.trace(covmean)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fd_torch_fidelity(mu1, sigma1, mu2, sigma2):
    diff = mu1 - mu2
    tr_covmean = np.sum(np.sqrt(np.linalg.eigvals(sigma1.dot(sigma2))).real)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def isc_torch_fidelity(feature, splits=10, shuffle=True, rng_seed=2020):
    feature = torch.from_numpy(feature)
    n = feature.shape[0]
    if shuffle:
        rng = np.random.RandomState(rng_seed)
        feature = feature[rng.permutation(n), :]
    feature = feature.double()
    p = feature.softmax(dim=1)
    log_p = feature.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        p_chunk = p[(i * n // splits): ((i + 1) * n // splits), :]
        log_p_chunk = log_p[(i * n // splits): ((i + 1) * n // splits), :]
        q_chunk = p_chunk.mean(dim=0, keepdim=True)
        kl = p_chunk * (log_p_chunk - q_chunk.log())
        kl = kl.sum(dim=1).mean().exp().item()
        scores.append(kl)
    return float(np.mean(scores)), float(np.std(scores)), scores


def prc_torch_fidelity(real, fake, neighborhood=3):
    """calculate_precision_recall_full: features_1 = real, features_2 = generated."""
    f1, f2 = torch.from_numpy(real), torch.from_numpy(fake)
    dist_nn_1 = torch.cdist(f1, f1).kthvalue(neighborhood + 1).values
    dist_nn_2 = torch.cdist(f2, f2).kthvalue(neighborhood + 1).values
    dist_2_1 = torch.cdist(f2, f1)
    dist_1_2 = dist_2_1.T
    precision = (dist_2_1 <= dist_nn_1).any(dim=1).float().mean().item()
    recall = (dist_1_2 <= dist_nn_2).any(dim=1).float().mean().item()
    return precision, recall


def prc_float64(real, fake, k=3):
    """The same formula on exact float64 distances (what lib/metrics computes)."""
    r, f = real.astype(np.float64), fake.astype(np.float64)

    def sqdist(a, b):
        return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)

    rr, ff, fr = sqdist(r, r), sqdist(f, f), sqdist(f, r)
    np.fill_diagonal(rr, np.inf)
    np.fill_diagonal(ff, np.inf)
    radius_r = np.sort(rr, axis=1)[:, k - 1]
    radius_f = np.sort(ff, axis=1)[:, k - 1]
    precision = float((fr <= radius_r[None, :]).any(axis=1).mean())
    recall = float((fr.T <= radius_f[None, :]).any(axis=1).mean())
    return precision, recall


def prdc_strict(real, fake, k=3):
    out = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    return float(out["precision"]), float(out["recall"])


def write(name, value):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name)
    with open(path, "w") as fh:
        json.dump(value, fh, indent=1)
        fh.write("\n")
    print(f"wrote {path}")


def versions():
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "prdc": "0.2",
    }


def main():
    torch.set_num_threads(1)
    base = {"latent": 8, "noise": 0.1, "mixSeed": 100}
    cases = {
        "d64_n500": (
            dict(base, n=500, dim=64, latentSeed=1, noiseSeed=2, scale=1.0, shift=0.0),
            dict(base, n=500, dim=64, latentSeed=3, noiseSeed=4, scale=1.2, shift=0.3),
        ),
        "d256_n600": (
            dict(base, n=600, dim=256, latent=32, latentSeed=11, noiseSeed=12, scale=1.0,
                 shift=0.0),
            dict(base, n=600, dim=256, latent=32, latentSeed=13, noiseSeed=14, scale=0.8,
                 shift=-0.2),
        ),
        # fewer samples than dimensions: singular covariances
        "d64_n40": (
            dict(base, n=40, dim=64, latentSeed=21, noiseSeed=22, scale=1.0, shift=0.0),
            dict(base, n=40, dim=64, latentSeed=23, noiseSeed=24, scale=1.1, shift=0.1),
        ),
    }
    fd_cases = []
    for name, (rs, fs) in cases.items():
        real, fake = mixed_set(rs), mixed_set(fs)
        mu_r, s_r = stats(real)
        mu_f, s_f = stats(fake)
        entry = {
            "name": name,
            "real": rs,
            "fake": fs,
            "checksum": {"real": checksum(real), "fake": checksum(fake)},
            "first": {"real": [float(v) for v in real.ravel()[:4]],
                      "fake": [float(v) for v in fake.ravel()[:4]]},
            "traceReal": float(np.trace(s_r)),
            "traceFake": float(np.trace(s_f)),
            "meanTerm": float(((mu_r - mu_f) ** 2).sum()),
            "fdPytorchFid": fd_pytorch_fid(mu_f, s_f, mu_r, s_r),
            "fdTorchFidelity": fd_torch_fidelity(mu_f, s_f, mu_r, s_r),
            "fdSelfPytorchFid": fd_pytorch_fid(mu_r, s_r, mu_r, s_r),
        }
        if real.shape[0] > 3:
            entry["precisionRecallTorchFidelity"] = prc_torch_fidelity(real, fake)
            entry["precisionRecallFloat64"] = prc_float64(real, fake)
            entry["precisionRecallPrdcStrict"] = prdc_strict(real, fake)
        fd_cases.append(entry)
        print(name, {k: v for k, v in entry.items() if k not in ("real", "fake", "first")})

    # collapsed generated sets (the precision/recall convention)
    rs = cases["d64_n500"][0]
    real = mixed_set(rs)
    collapsed = []
    for label, point in [("real0", real[0]), ("realMean", real.astype(np.float64).mean(0)),
                         ("far", real[0] + np.float32(100.0))]:
        fake = np.repeat(point.astype(np.float32)[None, :], 500, axis=0)
        collapsed.append({
            "point": label,
            "torchFidelity": prc_torch_fidelity(real, fake),
            "float64": prc_float64(real, fake),
            "prdcStrict": prdc_strict(real, fake),
        })
    print("collapsed", collapsed)

    write("frechet_precision_recall.json", {
        "about": "tools/metrics_reference.py: FD (pytorch-fid scipy sqrtm; torch-fidelity "
                 "eigvals), precision/recall k=3 (torch-fidelity float32 and float64; prdc <) on "
                 "sets rebuilt from RandomStream uniforms (see tests/_metric_sets.ts). FD "
                 "arguments: (generated, real).",
        "versions": versions(),
        "cases": fd_cases,
        "collapsed": {"real": rs, "n": 500, "cases": collapsed},
    })

    is_cases = []
    for spec in [dict(n=1000, classes=10, seed=7, spread=2.0, bias=3.0),
                 dict(n=1003, classes=10, seed=8, spread=1.0, bias=5.0)]:
        logits = class_logits(spec)
        shuffled = isc_torch_fidelity(logits)
        ordered = isc_torch_fidelity(logits, shuffle=False)
        is_cases.append({
            "logits": spec,
            "checksum": checksum(logits),
            "shuffled": {"mean": shuffled[0], "std": shuffled[1], "scores": shuffled[2]},
            "ordered": {"mean": ordered[0], "std": ordered[1], "scores": ordered[2]},
        })
        print("IS", spec, shuffled[:2], ordered[:2])
    perms = []
    for n, seed in [(1000, 2020), (1003, 2020), (5, 0), (70000, 2020)]:
        p = np.random.RandomState(seed).permutation(n)
        perms.append({
            "n": n,
            "seed": seed,
            "first": [int(v) for v in p[:40]],
            "weightedSum": int(((np.arange(n, dtype=np.int64) % 97 + 1) * p).sum()),
        })
    write("inception_score.json", {
        "about": "tools/metrics_reference.py: torch-fidelity isc_features_to_metric (splits 10, "
                 "float64) on class-sorted logits rebuilt from RandomStream uniforms, with its "
                 "default shuffle (RandomState(2020).permutation) and without; numpy permutations "
                 "for the port in lib/metrics/numpy_permutation.ts.",
        "versions": versions(),
        "cases": is_cases,
        "permutations": perms,
    })


if __name__ == "__main__":
    main()
