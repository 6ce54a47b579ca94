/**
 * Task `weights`: what models are installed (manifest entries, file present, sha256 verified),
 * which of the thesis's models are missing and the exact commands that obtain and convert them,
 * and `--add <path>` to register a converted ONNX file in the manifest.
 *   deno task weights
 *   deno task weights --add weights/ddpm_cifar10_32.onnx --id ddpm-cifar10-32 [--kind denoiser]
 *     [--range pm1|01] [--mean r,g,b --std r,g,b] [--scheduler-config scheduler_config.json]
 * @module
 */
import { decodeModel } from "../lib/onnx/proto.ts";
import { sha256Hex } from "../lib/runtime/session.ts";
import { scheduleSpecFromDiffusers } from "../lib/schedule.ts";
import { loadManifest, type ManifestEntry, weightsBaseFrom } from "../lib/weights.ts";
import { writeJsonAtomic } from "../lib/io/outputs.ts";
import { choiceFlag, parseFlags, UsageError } from "./_args.ts";
import { parseTriple } from "./_models.ts";

/** The thesis's models (METHOD.md §1, §6) and how to obtain and convert each. */
export const THESIS_MODELS: Array<{ id: string; what: string; commands: string[] }> = [
  {
    id: "ddpm-cifar10-32",
    what: "google/ddpm-cifar10-32 (diffusers UNet2DModel, 35.7M params, the thesis's denoiser)",
    commands: [
      `.venv/bin/python -c "from huggingface_hub import snapshot_download as d; d('google/ddpm-cifar10-32', local_dir='ddpm-cifar10-32', allow_patterns=['*.json', '*.safetensors', '*.bin'])"   # on a machine that reaches the hub`,
      ".venv/bin/python weights/recipes/export_diffusers_unet.py ddpm-cifar10-32 --out weights/ddpm_cifar10_32.onnx --id ddpm-cifar10-32",
    ],
  },
  ...["0", "0.25", "0.5", "1.0"].map((eps) => {
    const file = `cifar_l2_${eps.replace(".", "_")}.pt`;
    return {
      id: `robustness-cifar-l2-${eps}`,
      what: `MadryLab robustness CIFAR-10 ResNet-50, L2 PGD eps ${eps} (${file})`,
      commands: [
        `# download ${file} from the MadryLab/robustness README's model table, then:`,
        `.venv/bin/python weights/recipes/export_robustness_resnet.py ${file} --out weights/robustness_${
          file.replace(".pt", "")
        }.onnx --id robustness-cifar-l2-${eps}`,
      ],
    };
  }),
  {
    id: "robustness-imagenet-l2-3.0",
    what:
      "MadryLab robustness ImageNet ResNet-50, L2 PGD eps 3.0 (imagenet_l2_3_0.pt): the robust guide of ImageNet guidance work",
    commands: [
      "# download imagenet_l2_3_0.pt from the MadryLab/robustness README's ImageNet table, then (224: its training size; the ADM samples are 64 or 256):",
      ".venv/bin/python weights/recipes/export_robustness_resnet.py imagenet_l2_3_0.pt --image-size 224 --no-cifar10-classes --out weights/classifiers/robustness_imagenet_l2_3_0.onnx --id robustness-imagenet-l2-3.0",
    ],
  },
  ...([
    [
      "adm-cifar10-uncond",
      "cifar10_uncond_50M_500K.pt",
      "cifar10 --noise-schedule cosine",
      "improved-diffusion CIFAR-10 unconditional (52.5M params, learned sigma, cosine T = 4000, rescaled t)",
    ],
    [
      "adm-imagenet64-uncond",
      "imagenet64_uncond_100M_1500K.pt",
      "imagenet64",
      "improved-diffusion ImageNet 64x64 unconditional (121M params, learned sigma, cosine T = 4000, rescaled t)",
    ],
  ] as const).map(([id, file, preset, what]) => ({
    id,
    what: `${what} (${file})`,
    commands: [
      `# download ${file} from the openai/improved-diffusion README, then:`,
      `.venv/bin/python weights/recipes/export_adm.py ${file} --preset ${preset} --out weights/denoisers/${id}.onnx --id ${id}`,
    ],
  })),
  {
    id: "adm-imagenet256-uncond",
    what:
      "guided-diffusion 256x256 unconditional (553M params, learned sigma, linear T = 1000; 2.2 GB of weights: the ONNX keeps them in <out>.data, so it is used by path, not through the manifest)",
    commands: [
      "# download 256x256_diffusion_uncond.pt from the openai/guided-diffusion README, then:",
      ".venv/bin/python weights/recipes/export_adm.py 256x256_diffusion_uncond.pt --preset imagenet256 --out weights/denoisers/adm-imagenet256-uncond.onnx --no-manifest",
      "# then: deno task guide --model weights/denoisers/adm-imagenet256-uncond.onnx --classifier <256x256 or --input-size> ...",
    ],
  },
  {
    id: "fid-inception",
    what: "pytorch-fid Inception-v3 (pt_inception-2015-12-05-6726825d.pth), for standard FID/IS",
    commands: [
      "# download pt_inception-2015-12-05-6726825d.pth (FID_WEIGHTS_URL in pytorch_fid/inception.py), then:",
      ".venv/bin/python weights/recipes/export_fid_inception.py pt_inception-2015-12-05-6726825d.pth --out weights/fid_inception.onnx --id fid-inception",
    ],
  },
];

/** The kind of an ONNX model from its signature: (x, t) -> eps, x -> [N,K], or a features output. */
export function detectKind(bytes: Uint8Array, what: string): ManifestEntry["kind"] {
  const m = decodeModel(bytes, what);
  const inits = new Set((m.graph.initializer ?? []).map((t) => t.name));
  const inputs = m.graph.input.filter((i) => !inits.has(i.name));
  const outs = m.graph.output.map((o) => o.name);
  if (inputs.some((i) => i.name === "coef") && outs.includes("grad")) return "energy-head";
  if (outs.includes("features")) return "feature";
  if (inputs.length === 2) return "denoiser";
  if (inputs.length === 1) return "classifier";
  throw new UsageError(`${what}: cannot tell its kind from ${inputs.length} inputs; pass --kind`);
}

async function status(entry: ManifestEntry, base: URL): Promise<{ ok: boolean; text: string }> {
  const url = new URL(entry.file, base);
  try {
    const bytes = url.protocol === "file:"
      ? await Deno.readFile(url)
      : new Uint8Array(await (await fetch(url)).arrayBuffer());
    const sha = sha256Hex(bytes);
    return sha === entry.sha256
      ? { ok: true, text: `ok (${(bytes.length / 1e6).toFixed(1)} MB, sha256 verified)` }
      : {
        ok: false,
        text: `SHA256 MISMATCH (file ${sha.slice(0, 12)}..., manifest ${
          entry.sha256.slice(0, 12)
        }...)`,
      };
  } catch {
    return { ok: false, text: `MISSING (${url.protocol === "file:" ? url.pathname : url.href})` };
  }
}

/** Usage text of `weights`. */
export const WEIGHTS_USAGE = `deno task weights [flags]
  lists the manifest's models (file present, sha256 verified), the thesis's models that are
  missing and the commands that obtain and convert them
  --weights <dir|url>      weights folder holding manifest.json (default: the repository's)
deno task weights --add <file.onnx> --id <id> [flags]   registers a converted model
  --kind denoiser|classifier|energy-head|feature   (default: read from its inputs/outputs)
  --range pm1|01 --mean r,g,b --std r,g,b          its input convention
  --scheduler-config <scheduler_config.json>       a denoiser's diffusers schedule
  --description <text>`;

/** Runs `weights`. */
export async function weightsTask(args: string[]): Promise<void> {
  const f = parseFlags("weights", args, {
    help: { type: "boolean" },
    add: { type: "string" },
    id: { type: "string" },
    kind: { type: "string" },
    range: { type: "string" },
    mean: { type: "string" },
    std: { type: "string" },
    "scheduler-config": { type: "string" },
    description: { type: "string" },
    weights: { type: "string" },
  });
  if (f.help) {
    console.log(WEIGHTS_USAGE);
    return;
  }
  const base = weightsBaseFrom(f.weights);
  if (f.add !== undefined) {
    const { help: _help, ...rest } = f;
    return await addModel(rest, base);
  }
  const manifest = await loadManifest(base);
  const roles = Object.entries(manifest.defaults).map(([role, id]) => [id, role]);
  let bad = 0;
  console.log(`weights in ${base.href}manifest.json:`);
  for (const [id, e] of Object.entries(manifest.models)) {
    const s = await status(e, base);
    if (!s.ok) bad++;
    const tags = [
      ...roles.filter(([rid]) => rid === id).map(([, r]) => `default ${r}`),
      e.testing ? "testing only" : "",
      e.external ? "external" : "",
    ].filter(Boolean);
    console.log(
      `  ${id.padEnd(24)} ${e.kind.padEnd(12)} ${s.text}${
        tags.length ? `  [${tags.join(", ")}]` : ""
      }`,
    );
  }
  const missing = THESIS_MODELS.filter((t) => !manifest.models[t.id]);
  if (missing.length) {
    console.log(
      `\nthesis models not installed (${missing.length}); to obtain and convert them ` +
        `(Python venv: see weights/recipes/README.md):`,
    );
    for (const t of missing) {
      console.log(`\n  ${t.id}: ${t.what}`);
      for (const c of t.commands) console.log(`    ${c}`);
    }
  }
  if (bad) throw new Error(`${bad} manifest model(s) missing or corrupt (see above)`);
}

async function addModel(f: Record<string, string | undefined>, base: URL): Promise<void> {
  const path = f.add!;
  if (!f.id || !/^[a-z0-9][a-z0-9._-]*$/.test(f.id)) {
    throw new UsageError(
      `--add needs --id <name> (lowercase letters, digits, . _ -); got '${f.id ?? ""}'`,
    );
  }
  if (base.protocol !== "file:") {
    throw new UsageError(`--add writes the manifest: --weights must be a local folder`);
  }
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch {
    throw new UsageError(`--add ${path}: file not found; pass the converted .onnx file`);
  }
  const kind = f.kind === undefined ? detectKind(bytes, path) : choiceFlag(
    "kind",
    f.kind,
    ["denoiser", "classifier", "energy-head", "feature"] as const,
    "classifier",
  );
  const manifestPath = new URL("manifest.json", base).pathname;
  const manifest = await loadManifest(base);
  const abs = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const dir = base.pathname;
  const entry: ManifestEntry = {
    file: abs.startsWith(dir) ? abs.slice(dir.length) : abs,
    sha256: sha256Hex(bytes),
    kind,
    input: {
      range: choiceFlag(
        "range",
        f.range,
        ["pm1", "01"] as const,
        kind === "denoiser" ? "pm1" : "01",
      ),
      layout: "nchw",
      shape: [3, 32, 32],
      mean: parseTriple("mean", f.mean),
      std: parseTriple("std", f.std),
    },
    source: `registered by 'deno task weights --add ${path}'`,
    description: f.description,
  };
  if (f["scheduler-config"] !== undefined) {
    entry.schedule = scheduleSpecFromDiffusers(
      JSON.parse(await Deno.readTextFile(f["scheduler-config"])),
    );
  } else if (kind === "denoiser") {
    throw new UsageError(
      `--add of a denoiser needs --scheduler-config <diffusers scheduler_config.json>`,
    );
  }
  manifest.models[f.id] = entry;
  await writeJsonAtomic(manifestPath, manifest);
  console.log(
    `weights: registered '${f.id}' (${kind}, sha256 ${
      entry.sha256.slice(0, 16)
    }...) in ${manifestPath}`,
  );
}
