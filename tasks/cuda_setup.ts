/**
 * Task `cuda-setup`: puts onnxruntime-node's CUDA execution provider beside its native binding,
 * and `--check` says exactly what is missing without installing anything.
 *   deno task cuda-setup --check          diagnose: provider library / CUDA or cuDNN libraries
 *                                          (which) / NVIDIA driver / device, then a real session
 *   deno task cuda-setup                  install from PyPI (default): the onnxruntime-gpu wheel
 *                                          of the same version as onnxruntime-node (its provider
 *                                          libraries) + NVIDIA's CUDA/cuDNN runtime wheels for
 *                                          the libraries the machine lacks
 *   deno task cuda-setup --from npm       onnxruntime-node's own installer (its host must be
 *                                          reachable): --onnxruntime-node-install=cuda12
 * The NVIDIA driver (libcuda.so.1) comes with the GPU's kernel driver and is never installed here.
 * @module
 */
import { loadOnnx } from "../lib/runtime/session.ts";
import {
  canLoad,
  CUDA_LIBS_FILE,
  elfNeeded,
  libraryKind,
  ortBindingDir,
  preloadCudaLibraries,
} from "../lib/runtime/cuda_libs.ts";
import { choiceFlag, parseFlags, UsageError } from "./_args.ts";

/** Usage text of `cuda-setup`. */
export const CUDA_SETUP_USAGE =
  `deno task cuda-setup [--check] [--from pypi|npm] [--python <exe>] [--dry-run]
  --check        diagnose only (installs nothing); exit 0 when the CUDA provider runs, 1 otherwise
  --from pypi    (default) onnxruntime-gpu==<onnxruntime-node's version> from PyPI (its provider
                 libraries), plus nvidia-* CUDA/cuDNN wheels for the libraries the machine lacks,
                 installed under the binding folder; no system change, no environment variable
  --from npm     onnxruntime-node's installer (--onnxruntime-node-install=cuda12; its host must
                 be reachable); CUDA and cuDNN must then come from the system
  --python <exe> the Python whose pip downloads the wheels (default python3)
  --dry-run      print the commands of an install without running them`;

/** The provider's libraries (onnxruntime-node loads them from its binding folder). */
const PROVIDER_FILES = ["libonnxruntime_providers_cuda.so", "libonnxruntime_providers_shared.so"];

/**
 * What onnxruntime(-gpu) 1.30.0's provider needs when its file is not there to read: its
 * DT_NEEDED (measured) and cuDNN 9, which the provider loads at run time.
 */
const NEEDED_1_30 = [
  "libcublasLt.so.13",
  "libcublas.so.13",
  "libcurand.so.10",
  "libcudart.so.13",
  "libcuda.so.1",
];
/** Loaded by the provider at run time (not in DT_NEEDED): cuDNN 9 for ORT >= 1.19. */
const RUNTIME_LOADED = ["libcudnn.so.9"];

/** Preload order: a library before those that need it. */
const PRELOAD_ORDER = [
  "libcudart",
  "libcublasLt",
  "libcublas",
  "libcurand",
  "libcufft",
  "libcudnn",
];

/** One line of the diagnosis. */
export interface Finding {
  /** What was checked. */
  what: "provider" | "cuda" | "cudnn" | "driver" | "device" | "session";
  /** The library or item. */
  item: string;
  /** Whether it is in place. */
  ok: boolean;
  /** Where it was found, or why not. */
  detail: string;
}

/** The PyPI wheel that ships a CUDA/cuDNN library, for the CUDA major of the provider. */
export function wheelFor(soname: string, cudaMajor: number): string | undefined {
  const m = /^lib([A-Za-z]+)\.so\.(\d+)/.exec(soname);
  if (!m) return undefined;
  const [, base, major] = m;
  const cu = cudaMajor >= 13 ? "" : `-cu${cudaMajor}`;
  switch (base) {
    case "cudart":
      return `nvidia-cuda-runtime${cu}==${major}.*`;
    case "cublas":
    case "cublasLt":
      return `nvidia-cublas${cu}==${major}.*`;
    case "curand":
      return cudaMajor >= 13 ? `nvidia-curand>=10.4,<11` : `nvidia-curand${cu}==${major}.*`;
    case "cufft":
      return `nvidia-cufft${cu}==${major}.*`;
    case "cudnn":
      return `nvidia-cudnn-cu${cudaMajor}==${major}.*`;
    default:
      return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** onnxruntime-node's version (its package.json beside the binding). */
async function ortVersion(dir: string): Promise<string> {
  const pkg = JSON.parse(
    await Deno.readTextFile(new URL("../../../../package.json", `file://${dir}`)),
  );
  return pkg.version;
}

/** Devices through the driver API (cuInit, cuDeviceGetCount), when the driver loads. */
function countDevices(): Finding {
  try {
    const lib = Deno.dlopen("libcuda.so.1", {
      cuInit: { parameters: ["u32"], result: "i32" },
      cuDeviceGetCount: { parameters: ["buffer"], result: "i32" },
      cuDriverGetVersion: { parameters: ["buffer"], result: "i32" },
    });
    const v = new Int32Array(1), n = new Int32Array(1);
    lib.symbols.cuDriverGetVersion(v);
    const init = lib.symbols.cuInit(0);
    if (init !== 0) {
      return {
        what: "device",
        item: "GPU",
        ok: false,
        detail: `cuInit failed (CUresult ${init}): no usable device`,
      };
    }
    lib.symbols.cuDeviceGetCount(n);
    const driver = `driver API ${Math.floor(v[0] / 1000)}.${(v[0] % 1000) / 10}`;
    return n[0] > 0
      ? { what: "device", item: "GPU", ok: true, detail: `${n[0]} device(s), ${driver}` }
      : { what: "device", item: "GPU", ok: false, detail: `the driver sees no device (${driver})` };
  } catch (e) {
    return {
      what: "device",
      item: "GPU",
      ok: false,
      detail: `not checked: ${(e as Error).message}`,
    };
  }
}

/** Everything between onnxruntime-node and a CUDA session, each with where it is or why not. */
export async function diagnose(dir: string): Promise<Finding[]> {
  const out: Finding[] = [];
  for (const f of PROVIDER_FILES) {
    const ok = await exists(`${dir}${f}`);
    out.push({ what: "provider", item: f, ok, detail: ok ? dir : `not in ${dir}` });
  }
  let preloaded: string[] = [];
  try {
    preloaded = preloadCudaLibraries(dir);
  } catch (e) {
    out.push({ what: "cuda", item: CUDA_LIBS_FILE, ok: false, detail: (e as Error).message });
  }
  const providerPath = `${dir}${PROVIDER_FILES[0]}`;
  const needed = (out[0].ok ? await elfNeeded(providerPath) : NEEDED_1_30).concat(RUNTIME_LOADED);
  for (const lib of needed) {
    const kind = libraryKind(lib);
    if (kind === "system") continue;
    const pre = preloaded.find((p) => p.endsWith(`/${lib}`));
    const r = canLoad(lib);
    const what = kind === "driver" ? "driver" : kind;
    out.push({
      what,
      item: lib,
      ok: r.ok || pre !== undefined,
      detail: pre ? `${pre} (cuda-setup)` : r.ok ? "system library path" : r.error,
    });
  }
  const driverOk = out.some((f) => f.what === "driver" && f.ok);
  const devices = driverOk ? countDevices() : {
    what: "device" as const,
    item: "GPU",
    ok: false,
    detail: `not checked without the driver; /dev/nvidia0 ${
      (await exists("/dev/nvidia0")) ? "exists" : "does not exist"
    }`,
  };
  out.push(devices);
  if (out.every((f) => f.ok)) {
    try {
      const m = await loadOnnx(
        new URL("../weights/testing/tiny_unet.onnx", import.meta.url).pathname,
        {
          provider: "cuda",
        },
      );
      out.push({
        what: "session",
        item: "tiny_unet.onnx",
        ok: m.provider === "cuda",
        detail: `ran on ${m.provider}`,
      });
    } catch (e) {
      out.push({
        what: "session",
        item: "tiny_unet.onnx",
        ok: false,
        detail: (e as Error).message.split("\n")[0],
      });
    }
  }
  return out;
}

/** The report of a diagnosis: one line per item and a summary naming what is missing. */
export function diagnosisText(dir: string, version: string, findings: Finding[]): string {
  const lines = [`onnxruntime-node ${version}, native binding ${dir}`];
  const label: Record<Finding["what"], string> = {
    provider: "provider library",
    cuda: "CUDA library",
    cudnn: "cuDNN library",
    driver: "NVIDIA driver",
    device: "device",
    session: "CUDA session",
  };
  for (const f of findings) {
    lines.push(
      `  ${f.ok ? "ok     " : "MISSING"} ${label[f.what].padEnd(16)} ${
        f.item.padEnd(36)
      } ${f.detail}`,
    );
  }
  const missing = findings.filter((f) => !f.ok);
  if (!missing.length) {
    lines.push("CUDA is ready: tasks run on the GPU with --provider auto (default) or cuda.");
    return lines.join("\n");
  }
  const by = (w: Finding["what"]) => missing.filter((f) => f.what === w).map((f) => f.item);
  const parts = [
    by("provider").length
      ? `provider library (${by("provider").join(", ")}): run deno task cuda-setup`
      : "",
    by("cuda").length
      ? `CUDA libraries (${by("cuda").join(", ")}): deno task cuda-setup installs NVIDIA's wheels`
      : "",
    by("cudnn").length
      ? `cuDNN libraries (${by("cudnn").join(", ")}): deno task cuda-setup installs NVIDIA's wheel`
      : "",
    by("driver").length
      ? `NVIDIA driver (${
        by("driver").join(", ")
      }): only a machine with an NVIDIA GPU and its driver has it`
      : "",
    by("device").length && !by("driver").length
      ? `device: ${missing.find((f) => f.what === "device")!.detail}`
      : "",
    by("session").length
      ? `CUDA session: ${missing.find((f) => f.what === "session")!.detail}`
      : "",
  ].filter(Boolean);
  lines.push(`missing: ${parts.join("; ")}`);
  lines.push("tasks run on the CPU until then (run.json records the provider and why).");
  return lines.join("\n");
}

async function run(cmd: string[], dryRun: boolean): Promise<void> {
  console.error(`cuda-setup: $ ${cmd.join(" ")}`);
  if (dryRun) return;
  const r = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdout: "inherit",
    stderr: "inherit",
  })
    .output();
  if (!r.success) throw new Error(`cuda-setup: '${cmd.join(" ")}' failed (exit ${r.code})`);
}

/** Finds a file by name under a folder (the wheels' nvidia/<pkg>/lib layout varies). */
async function findFile(root: string, name: string): Promise<string | undefined> {
  for await (const e of Deno.readDir(root)) {
    const p = `${root}/${e.name}`;
    if (e.isFile && e.name === name) return p;
    if (e.isDirectory) {
      const f = await findFile(p, name);
      if (f) return f;
    }
  }
  return undefined;
}

/** Runs `cuda-setup`. */
export async function cudaSetupTask(args: string[]): Promise<void> {
  const f = parseFlags("cuda-setup", args, {
    check: { type: "boolean" },
    from: { type: "string" },
    python: { type: "string" },
    "dry-run": { type: "boolean" },
    help: { type: "boolean" },
  });
  if (f.help) {
    console.log(CUDA_SETUP_USAGE);
    return;
  }
  const from = choiceFlag("from", f.from, ["pypi", "npm"] as const, "pypi");
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    throw new UsageError(
      `cuda-setup supports linux x86_64 (onnxruntime-node ships CUDA for it only); this is ` +
        `${Deno.build.os} ${Deno.build.arch}`,
    );
  }
  const dir = ortBindingDir();
  if (!dir || !(await exists(`${dir}onnxruntime_binding.node`))) {
    throw new UsageError(
      `onnxruntime-node's native binding is not in a local node_modules (${
        dir ?? "unresolved"
      }); ` +
        `run npm ci first`,
    );
  }
  const version = await ortVersion(dir);
  if (f.check) {
    const findings = await diagnose(dir);
    console.log(diagnosisText(dir, version, findings));
    if (!findings.every((x) => x.ok)) Deno.exitCode = 1;
    return;
  }
  const dry = f["dry-run"] === true;
  if (from === "npm") {
    await run([
      "node",
      new URL("../../../../script/install.js", `file://${dir}`).pathname,
      "--onnxruntime-node-install=cuda12",
    ], dry);
    if (!dry && !(await exists(`${dir}${PROVIDER_FILES[0]}`))) {
      console.error(
        `cuda-setup: onnxruntime-node's installer ended without writing ${PROVIDER_FILES[0]} ` +
          `(its download host unreachable?); the PyPI route needs only pip: ` +
          `deno task cuda-setup --from pypi`,
      );
    }
  } else {
    const py = f.python ?? "python3";
    const cache = `${dir}cuda-setup`;
    const providerMissing = !(await exists(`${dir}${PROVIDER_FILES[0]}`));
    if (providerMissing) {
      // the provider libraries do not depend on the Python version: any cp tag of the wheel works
      await run([
        py,
        "-m",
        "pip",
        "download",
        `onnxruntime-gpu==${version}`,
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        "manylinux_2_28_x86_64",
        "--python-version",
        "3.11",
        "-d",
        `${cache}/wheel`,
      ], dry);
      const extract = `import glob, zipfile, os, sys
w = glob.glob(os.path.join(sys.argv[1], "onnxruntime_gpu-*.whl"))[0]
z = zipfile.ZipFile(w)
for name in sys.argv[3:]:
    data = z.read("onnxruntime/capi/" + name)
    tmp = os.path.join(sys.argv[2], name + ".part")
    open(tmp, "wb").write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, os.path.join(sys.argv[2], name))
    print("cuda-setup: wrote", os.path.join(sys.argv[2], name), file=sys.stderr)`;
      await run([py, "-c", extract, `${cache}/wheel`, dir, ...PROVIDER_FILES], dry);
    }
    // the CUDA / cuDNN libraries the system cannot load, from NVIDIA's wheels
    const needed = ((await exists(`${dir}${PROVIDER_FILES[0]}`))
      ? await elfNeeded(`${dir}${PROVIDER_FILES[0]}`)
      : NEEDED_1_30).concat(RUNTIME_LOADED);
    const cudaMajor = Number(/libcudart\.so\.(\d+)/.exec(needed.join(" "))?.[1] ?? 13);
    const libs = needed.filter((l) =>
      ["cuda", "cudnn"].includes(libraryKind(l))
    );
    const missing = libs.filter((l) => !canLoad(l).ok);
    const wheels = [
      ...new Set(missing.map((l) => wheelFor(l, cudaMajor)).filter((w) => w)),
    ] as string[];
    const target = `${cache}/nvidia`;
    if (wheels.length) {
      await run([
        py,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--only-binary=:all:",
        "--upgrade",
        "--target",
        target,
        ...wheels,
      ], dry);
    }
    if (!dry) {
      const preload: string[] = [];
      for (const l of missing) {
        const p = await findFile(target, l);
        if (!p) throw new Error(`cuda-setup: ${l} is not in the wheels installed under ${target}`);
        preload.push(p);
      }
      const rank = (p: string) =>
        PRELOAD_ORDER.findIndex((b) => p.split("/").pop()!.startsWith(`${b}.`));
      preload.sort((a, b) => rank(a) - rank(b));
      const tmp = `${dir}${CUDA_LIBS_FILE}.part`;
      await Deno.writeTextFile(tmp, JSON.stringify({ preload, cudaMajor, wheels }, null, 2) + "\n");
      await Deno.rename(tmp, `${dir}${CUDA_LIBS_FILE}`);
      console.error(
        `cuda-setup: ${preload.length} libraries to preload -> ${dir}${CUDA_LIBS_FILE}`,
      );
    }
  }
  if (dry) return;
  const findings = await diagnose(dir);
  console.log(diagnosisText(dir, version, findings));
  if (!findings.every((x) => x.ok)) Deno.exitCode = 1;
}
