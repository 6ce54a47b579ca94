// cuda-setup: the ELF reader, the library classification, the wheel names, and --check naming
// exactly what is missing (run on whatever machine the suite runs on: no GPU assumed).
import assert from "node:assert/strict";
import { elfNeeded, libraryKind, ortBindingDir } from "../lib/runtime/cuda_libs.ts";
import { diagnose, diagnosisText, type Finding, wheelFor } from "../tasks/cuda_setup.ts";

Deno.test("elfNeeded reads DT_NEEDED of onnxruntime-node's own library", async () => {
  const dir = ortBindingDir();
  assert.ok(dir, "onnxruntime-node resolves to a local node_modules");
  const needed = await elfNeeded(`${dir}libonnxruntime.so.1`);
  assert.ok(needed.includes("libstdc++.so.6") && needed.includes("libc.so.6"), needed.join(", "));
  await assert.rejects(() => elfNeeded(new URL(import.meta.url).pathname), /not a 64-bit/);
});

Deno.test("libraries are classified as driver / CUDA / cuDNN / system and mapped to NVIDIA's wheels", () => {
  assert.equal(libraryKind("libcuda.so.1"), "driver");
  assert.equal(libraryKind("libcudart.so.13"), "cuda");
  assert.equal(libraryKind("libcublasLt.so.13"), "cuda");
  assert.equal(libraryKind("libcudnn.so.9"), "cudnn");
  assert.equal(libraryKind("libstdc++.so.6"), "system");
  assert.equal(wheelFor("libcublasLt.so.13", 13), "nvidia-cublas==13.*");
  assert.equal(wheelFor("libcudart.so.12", 12), "nvidia-cuda-runtime-cu12==12.*");
  assert.equal(wheelFor("libcudnn.so.9", 13), "nvidia-cudnn-cu13==9.*");
  assert.equal(wheelFor("libcurand.so.10", 13), "nvidia-curand>=10.4,<11");
  assert.equal(wheelFor("libfoo.so.1", 13), undefined);
});

Deno.test("the diagnosis text names each missing item by kind", () => {
  const f = (what: Finding["what"], item: string, ok: boolean): Finding => ({
    what,
    item,
    ok,
    detail: ok ? "here" : "absent",
  });
  const text = diagnosisText("/x/", "1.30.0", [
    f("provider", "libonnxruntime_providers_cuda.so", true),
    f("cuda", "libcublas.so.13", false),
    f("cudnn", "libcudnn.so.9", false),
    f("driver", "libcuda.so.1", false),
    f("device", "GPU", false),
  ]);
  assert.match(text, /missing: CUDA libraries \(libcublas\.so\.13\)/);
  assert.match(text, /cuDNN libraries \(libcudnn\.so\.9\)/);
  assert.match(text, /NVIDIA driver \(libcuda\.so\.1\)/);
  assert.doesNotMatch(text, /provider library \(/);
  const ready = diagnosisText("/x/", "1.30.0", [f("provider", "p", true), f("session", "s", true)]);
  assert.match(ready, /CUDA is ready/);
});

Deno.test("--check on this machine: every item is named, and missing ones say so", async () => {
  const dir = ortBindingDir()!;
  const findings = await diagnose(dir);
  const items = findings.map((x) => x.item);
  for (const want of ["libonnxruntime_providers_cuda.so", "libcuda.so.1", "libcudnn.so.9", "GPU"]) {
    assert.ok(items.includes(want), `${want} is checked`);
  }
  const driver = findings.find((x) => x.item === "libcuda.so.1")!;
  const device = findings.find((x) => x.what === "device")!;
  if (!driver.ok) assert.ok(!device.ok, "no device is reported without the driver");
  const text = diagnosisText(dir, "1.30.0", findings);
  for (const x of findings.filter((x) => !x.ok && x.what !== "device")) {
    assert.ok(text.includes(x.item), `the summary names ${x.item}`);
  }
});
