#!/usr/bin/env python3
"""PyTorch eager reference for `deno task bench-compare` (bench/compare.ts).

bench/compare.ts starts this script as a subprocess and drives it over stdin/stdout, one JSON
object per line each way, so that the project (onnxruntime-node) and PyTorch are timed
interleaved in one run on one machine: project rep, PyTorch rep, project rep, ... Timings are
taken here with time.perf_counter around the work only (no IPC). Inputs and outputs travel as
raw float32 little-endian files written/read by both sides.

The models are the project's, rebuilt bit-for-bit in PyTorch:
  * tiny UNet: weights/recipes/export_tiny_unet.py build_model() (seeded random weights); its
    ONNX export is weights/testing/tiny_unet.onnx.
  * full UNet: the google/ddpm-cifar10-32 architecture with random weights,
    weights/recipes/verify_diffusers_unet.py random_unet(DDPM_CIFAR10_32_CONFIG, seed=0);
    `--export-full PATH` writes its ONNX (about 143 MB; keep it out of git: .cache/ or /tmp).
  * classifier: an ONNX graph of Conv/Relu/Add/Flatten/Gemm/Reshape (../shared/models/
    vnncomp21_resnet4b.onnx) run by a float32 torch interpreter (the float64 one of
    weights/recipes/energy_head_parity.py with the weights converted once and a batch-dynamic
    Reshape), behind the CIFAR-10 normalisation.

Operations (the same formulas as lib/sampler/ddim.ts, lib/guidance/guided.ts):
  unet      eps = UNet(x, t)                                    (torch.inference_mode)
  step      (a) eps = UNet(x, t); DDIM update t -> t' (eta 0, x0 clipped, eps re-derived)
  guided    (b) eps = UNet(x, t); g = -d/dx sum_n -f(x01_n)[y_n] (autograd, x01 = (x+1)/2);
            eps_hat = eps - s sqrt(1 - abar_t) g; DDIM update
  sample    (c) the 100-step (or given) guided DDIM loop of `guided` steps
  sample_dpm (d) the 20-step (or given) guided sample with diffusers' DPMSolverMultistepScheduler
            (DPM-Solver++(2M), midpoint, lower_order_final, thresholding at sample_max_value 1 =
            x0 clipped to [-1, 1], timestep_spacing "linspace": the project's dpmpp-2m defaults),
            eps_hat as in `guided` with autograd classifier gradients
  clf_fwd   classifier logits only (inference_mode)
  clf_grad  classifier forward + input gradient of the joint energy (the energy head's work)
  matmul    [n, n] @ [n, n], for the fp32 peak
Any command with "compiled": true runs the same work with the UNet and the classifier wrapped in
torch.compile (inductor, CPU, dynamic=False: one graph per batch size, compiled on the first call,
which the driver's warm-up absorbs; the compile seconds are reported by "compile_info"). The
scheduler arithmetic stays eager (it is elementwise and cheap).

Usage: started by bench/compare.ts; by hand:
  .venv/bin/python bench/pytorch_reference.py --export-full .cache/bench/ddpm_cifar10_32_random.onnx
  .venv/bin/python bench/pytorch_reference.py --threads 2 --serve < commands.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
RECIPES = os.path.join(ROOT, "weights", "recipes")
sys.path.insert(0, RECIPES)


def log(msg: str) -> None:
    print(f"[pytorch_reference] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# models


def build_unet(name: str) -> torch.nn.Module:
    if name == "tiny":
        import export_tiny_unet as tiny

        return tiny.EpsWrapper(tiny.build_model()).eval()
    if name == "full":
        import export_diffusers_unet as conv
        from verify_diffusers_unet import DDPM_CIFAR10_32_CONFIG, DDPM_CIFAR10_32_PARAMS, random_unet

        unet = random_unet(DDPM_CIFAR10_32_CONFIG, seed=0)
        n = sum(p.numel() for p in unet.parameters())
        assert n == DDPM_CIFAR10_32_PARAMS, n
        return conv.EpsWrapper(unet).eval()
    raise ValueError(f"unknown UNet {name!r} (tiny | full)")


def export_full(path: str) -> None:
    from _conversion_common import export_onnx

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = build_unet("full")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=g)
    t = torch.tensor([10, 900], dtype=torch.int64)
    tmp = path + ".partial"
    exporter = export_onnx(model, (x, t), tmp, ["x", "t"], ["eps"],
                           {"x": {0: "N"}, "t": {0: "N"}, "eps": {0: "N"}})
    os.replace(tmp, path)
    log(f"exported the full-size ddpm-cifar10-32 architecture (random weights, seed 0) with the "
        f"{exporter} exporter to {path} ({os.path.getsize(path):,} bytes)")


class OnnxClassifier(torch.nn.Module):
    """float32 torch interpreter of a Conv/Relu/Add/Gemm/Flatten/Reshape ONNX classifier.

    The op semantics are those of weights/recipes/energy_head_parity.py onnx_float64_forward;
    here the weights are converted once (not per call), everything is float32, and a Reshape
    to a fixed leading 1 (the shared models' batch-1 export) keeps the actual batch instead."""

    def __init__(self, path: str):
        super().__init__()
        import onnx
        from onnx import numpy_helper

        model = onnx.load(path)
        self.consts: dict[str, torch.Tensor] = {}
        for t in model.graph.initializer:
            v = torch.from_numpy(numpy_helper.to_array(t).copy())
            self.consts[t.name] = v.float() if v.is_floating_point() else v
        (self.inp,) = [i.name for i in model.graph.input if i.name not in self.consts]
        self.out = model.graph.output[0].name
        self.nodes = []
        for node in model.graph.node:
            a = {at.name: onnx.helper.get_attribute_value(at) for at in node.attribute}
            if node.op_type == "Constant":
                v = torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
                self.consts[node.output[0]] = v.float() if v.is_floating_point() else v
                continue
            if node.op_type not in ("Conv", "Relu", "Add", "Gemm", "Flatten", "Reshape"):
                raise ValueError(f"op {node.op_type} is not in this small interpreter")
            if node.op_type == "Conv":
                pads = a.get("pads", [0, 0, 0, 0])
                if pads[:2] != pads[2:]:
                    raise ValueError(f"asymmetric pads {pads} not supported here")
            self.nodes.append((node.op_type, list(node.input), node.output[0], a))
        # registered so that .parameters()/.to() would see them; requires_grad stays off
        for i, (k, v) in enumerate(self.consts.items()):
            self.register_buffer(f"c{i}", v, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = dict(self.consts)
        env[self.inp] = x
        for op, inputs, output, a in self.nodes:
            ins = [env[i] for i in inputs if i]
            if op == "Conv":
                pads = a.get("pads", [0, 0, 0, 0])
                out = F.conv2d(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                               stride=a.get("strides", 1), padding=pads[:2],
                               dilation=a.get("dilations", 1), groups=a.get("group", 1))
            elif op == "Relu":
                out = F.relu(ins[0])
            elif op == "Add":
                out = ins[0] + ins[1]
            elif op == "Gemm":
                A = ins[0].t() if a.get("transA", 0) else ins[0]
                B = ins[1].t() if a.get("transB", 0) else ins[1]
                out = a.get("alpha", 1.0) * (A @ B)
                if len(ins) > 2:
                    out = out + a.get("beta", 1.0) * ins[2]
            elif op == "Flatten":
                out = torch.flatten(ins[0], a.get("axis", 1))
            else:  # Reshape, batch-dynamic
                shape = [int(v) for v in ins[1].tolist()]
                if shape and shape[0] == 1:
                    shape[0] = ins[0].shape[0]
                out = ins[0].reshape(shape)
            env[output] = out
        return env[self.out]


# --------------------------------------------------------------------------------------------
# the operations (same formulas as the project)


class Reference:
    def __init__(self, classifier: str, mean: list[float], std: list[float]):
        self.unets: dict[str, torch.nn.Module] = {}
        self.clf = OnnxClassifier(classifier).eval()
        self.classifier_path = classifier
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.inputs: dict[str, torch.Tensor] = {}
        self.last: dict[str, torch.Tensor] = {}
        self.fwd_ms: float | None = None
        self.compiled = False  # set per command: use the torch.compile'd modules
        self.compiled_unets: dict[str, torch.nn.Module] = {}
        self.compiled_clf: torch.nn.Module | None = None
        self.compile_s: dict[str, float] = {}  # first-call seconds per (module, batch)

    def unet(self, name: str) -> torch.nn.Module:
        if name not in self.unets:
            t0 = time.perf_counter()
            self.unets[name] = build_unet(name)
            log(f"built the {name} UNet in {time.perf_counter() - t0:.1f} s")
        if self.compiled:
            if name not in self.compiled_unets:
                self.compiled_unets[name] = self._timed_compile(self.unets[name], f"unet:{name}")
            return self.compiled_unets[name]
        return self.unets[name]

    def classifier(self) -> torch.nn.Module:
        if self.compiled:
            if self.compiled_clf is None:
                self.compiled_clf = self._timed_compile(self.clf, "classifier")
            return self.compiled_clf
        return self.clf

    def _timed_compile(self, module: torch.nn.Module, what: str):
        import torch._dynamo

        # one graph per (batch size, grad mode): 3 batches x 2 modes per module, above nothing
        # near dynamo's default recompile limit (8), but a longer --batches list would be
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))
        compiled = torch.compile(module, backend="inductor", dynamic=False)

        def call(*args):
            key = f"{what}:b{args[0].shape[0]}:grad{int(torch.is_grad_enabled())}"
            if key in self.compile_s:
                return compiled(*args)
            t0 = time.perf_counter()
            out = compiled(*args)
            self.compile_s[key] = time.perf_counter() - t0
            log(f"torch.compile {key}: first call {self.compile_s[key]:.1f} s")
            return out

        return call

    def tensor(self, path: str, shape: list[int]) -> torch.Tensor:
        key = f"{path}:{shape}"
        if key not in self.inputs:
            self.inputs[key] = torch.from_numpy(np.fromfile(path, dtype="<f4").reshape(shape).copy())
        return self.inputs[key]

    # --- pieces

    def eps(self, model: str, x: torch.Tensor, t: int) -> torch.Tensor:
        with torch.inference_mode():
            return self.unet(model)(x, torch.full((x.shape[0],), t, dtype=torch.int64))

    def classifier_input(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) * 0.5 - self.mean) / self.std

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.classifier()(self.classifier_input(x))

    def joint_grad(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """d/dx of sum_n E(x_n, y_n), E(x, y) = -f(x01)[y] (the head with coef (1, 0, 0))."""
        xg = x.detach().requires_grad_(True)
        logits = self.classifier()(self.classifier_input(xg))
        energy = -logits.gather(1, y.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(energy, xg)
        return grad, logits.detach()

    @staticmethod
    def ddim(x: torch.Tensor, eps: torch.Tensor, abar_t: float, abar_prev: float) -> torch.Tensor:
        """lib/sampler/ddim.ts ddimStep with eta 0 and clip (eps re-derived where x0 clips)."""
        sa, s1a, sap = math.sqrt(abar_t), math.sqrt(1 - abar_t), math.sqrt(abar_prev)
        d = math.sqrt(max(0.0, 1 - abar_prev))
        x0 = (x - s1a * eps) / sa
        x0c = x0.clamp(-1, 1)
        e = torch.where(x0c != x0, (x - sa * x0c) / s1a, eps)
        return sap * x0c + d * e

    def guided_eps(self, model: str, x: torch.Tensor, t: int, abar_t: float, y: torch.Tensor,
                   scale: float) -> torch.Tensor:
        eps = self.eps(model, x, t)
        grad, _ = self.joint_grad(x, y)
        # g = -grad (ascent direction); eps_hat = eps - s w(t) g, w(t) = sqrt(1 - abar_t)
        return eps + (scale * math.sqrt(1 - abar_t)) * grad

    def sample(self, model: str, x: torch.Tensor, pairs, abars, y, scale) -> torch.Tensor:
        for (t, _), (a_t, a_prev) in zip(pairs, abars):
            e = self.guided_eps(model, x, t, a_t, y, scale)
            x = self.ddim(x, e, a_t, a_prev)
        return x

    def sample_dpm(self, model: str, x: torch.Tensor, steps: int, y, scale) -> torch.Tensor:
        from diffusers import DPMSolverMultistepScheduler

        sched = DPMSolverMultistepScheduler(
            num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
            algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
            lower_order_final=True, final_sigmas_type="zero", timestep_spacing="linspace",
            thresholding=True, sample_max_value=1.0)
        sched.set_timesteps(steps)
        abar = sched.alphas_cumprod
        for t in sched.timesteps:
            e = self.guided_eps(model, x, int(t), float(abar[int(t)]), y, scale)
            with torch.no_grad():
                x = sched.step(e, t, x).prev_sample
        return x

    # --- commands

    def run(self, c: dict) -> torch.Tensor | None:
        """One unit of work of case c["op"]; returns its main output."""
        op = c["op"]
        if op == "matmul":
            return self.inputs["mm_a"] @ self.inputs["mm_b"]
        n = c["n"]
        x = self.tensor(c["x"], [n, 3, 32, 32])
        y = torch.tensor(c.get("y", [0] * n), dtype=torch.int64)
        if op == "unet":
            return self.eps(c["model"], x, c["t"])
        if op == "step":
            t0 = time.perf_counter()
            eps = self.eps(c["model"], x, c["t"])
            self.fwd_ms = (time.perf_counter() - t0) * 1e3
            with torch.inference_mode():
                return self.ddim(x, eps, c["abarT"], c["abarPrev"])
        if op == "guided":
            e = self.guided_eps(c["model"], x, c["t"], c["abarT"], y, c["scale"])
            with torch.no_grad():
                return self.ddim(x, e, c["abarT"], c["abarPrev"])
        if op == "sample":
            return self.sample(c["model"], x, c["pairs"], c["abars"], y, c["scale"])
        if op == "sample_dpm":
            return self.sample_dpm(c["model"], x, c["steps"], y, c["scale"])
        if op == "clf_fwd":
            return self.logits(x)
        if op == "clf_grad":
            return self.joint_grad(x, y)[0]
        raise ValueError(f"unknown op {op!r}")

    def handle(self, c: dict) -> dict:
        cmd = c["cmd"]
        self.compiled = bool(c.get("compiled", False))
        if cmd == "compile_info":
            return {"compile_s": self.compile_s}
        if cmd == "info":
            return {"torch": torch.__version__, "threads": torch.get_num_threads(),
                    "interop_threads": torch.get_num_interop_threads(),
                    "parallel_info": torch.__config__.parallel_info(),
                    "mkldnn": torch.backends.mkldnn.is_available(),
                    "numpy": np.__version__, "python": sys.version.split()[0]}
        if cmd == "load":
            m = self.unet(c["model"])
            return {"params": sum(p.numel() for p in m.parameters())}
        if cmd == "flops":
            from torch.utils.flop_counter import FlopCounterMode

            x = torch.zeros(c["n"], 3, 32, 32)
            counter = FlopCounterMode(display=False)
            with counter, torch.inference_mode():
                self.unet(c["model"])(x, torch.full((c["n"],), 500, dtype=torch.int64))
            by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
            return {"flops": int(counter.get_total_flops()), "by_op": by_op}
        if cmd == "matmul_setup":
            g = torch.Generator().manual_seed(0)
            self.inputs["mm_a"] = torch.randn(c["size"], c["size"], generator=g)
            self.inputs["mm_b"] = torch.randn(c["size"], c["size"], generator=g)
            return {}
        if cmd == "time":
            ms, fwd_ms = [], []
            out = None
            for _ in range(c.get("warm", 0)):  # untimed runs first (threads awake, caches warm)
                self.run(c)
            for _ in range(c.get("reps", 1)):
                self.fwd_ms = None
                t0 = time.perf_counter()
                out = self.run(c)
                ms.append((time.perf_counter() - t0) * 1e3)
                if self.fwd_ms is not None:
                    fwd_ms.append(self.fwd_ms)
            if out is not None:
                self.last[c.get("key", c["op"])] = out
            return {"ms": ms, "fwd_ms": fwd_ms}
        if cmd == "save":
            # writes the last output of a timed case (or runs it once) for the parity check
            key = c.get("key", c["op"])
            out = self.last.get(key)
            if out is None or c.get("fresh"):
                out = self.run(c)
            np.ascontiguousarray(out.detach().numpy(), dtype="<f4").tofile(c["out"])
            return {"shape": list(out.shape)}
        if cmd == "clf_parity64":
            # the parity script's own float64 interpreter on the same inputs (cross-check of the
            # float32 interpreter here): max |logits32 - logits64|
            import onnx
            from energy_head_parity import onnx_float64_forward

            x = self.tensor(c["x"], [c["n"], 3, 32, 32])
            m = onnx.load(self.classifier_path)
            inp = self.classifier_input(x).double()
            ref = torch.cat([onnx_float64_forward(m, inp[i:i + 1]) for i in range(inp.shape[0])])
            return {"max_abs": float((self.logits(x).double() - ref).abs().max())}
        if cmd == "drop":
            self.inputs = {k: v for k, v in self.inputs.items() if k.startswith("mm_")}
            self.last.clear()
            return {}
        raise ValueError(f"unknown command {cmd!r}")


def serve(args) -> None:
    ref = Reference(args.classifier, json.loads(args.mean), json.loads(args.std))
    out = sys.stdout
    sys.stdout = sys.stderr  # anything printed by libraries goes to stderr, not the protocol
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            c = json.loads(line)
            if c.get("cmd") == "quit":
                break
            res = {"ok": True, **ref.handle(c)}
        except Exception as e:  # reported to the driver, which stops
            import traceback

            traceback.print_exc()
            res = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(res) + "\n")
        out.flush()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (intra-op)")
    p.add_argument("--serve", action="store_true", help="answer JSON-line commands on stdin")
    p.add_argument("--export-full", metavar="PATH", help="write the full-size UNet's ONNX and exit")
    p.add_argument("--classifier", default=os.path.join(ROOT, "..", "shared", "models",
                                                         "vnncomp21_resnet4b.onnx"))
    p.add_argument("--mean", default="[0.4914, 0.4822, 0.4465]")
    p.add_argument("--std", default="[0.2471, 0.2435, 0.2616]")
    args = p.parse_args()
    if args.export_full:
        export_full(args.export_full)
        return
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if args.serve:
        serve(args)
    else:
        p.error("pass --serve (driven by bench/compare.ts) or --export-full PATH")


if __name__ == "__main__":
    main()
