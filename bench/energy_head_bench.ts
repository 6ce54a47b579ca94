// Energy head cost on the real classifiers: forward only (the classifier with a dynamic batch,
// compiled as a forward-only head) vs the full head (forward + backward), batch 64 on CPU.
// Goal: head <= 3x forward. `deno bench -A bench/energy_head_bench.ts`; per image = time / 64.
import { loadEnergyClassifier } from "../lib/energy/classifier.ts";
import { CIFAR10_NORMALISATION } from "../lib/energy/conventions.ts";
import { compileEnergyHead } from "../lib/energy/head.ts";
import { RandomStream } from "../lib/random.ts";

const N = 64;
for (const name of ["vnncomp21_resnet2b", "vnncomp21_resnet4b", "sri_resnet_a"]) {
  const bytes = await Deno.readFile(new URL(`../../shared/models/${name}.onnx`, import.meta.url));
  const head = await loadEnergyClassifier(bytes, {
    conventions: CIFAR10_NORMALISATION,
    provider: "cpu",
  });
  const fwd = await loadEnergyClassifier(
    compileEnergyHead(bytes, { ...CIFAR10_NORMALISATION, gradient: false }),
    { provider: "cpu" },
  );
  const rng = new RandomStream(1);
  const x = new Float32Array(N * head.imageSize).map(() => rng.uniform());
  const y = Array.from({ length: N }, (_, i) => i % 10);
  const coef = new Float32Array(N * 3).fill(1);
  Deno.bench(`${name} forward, batch ${N}`, { group: name, baseline: true }, async () => {
    await fwd.forward(x, N, y);
  });
  Deno.bench(`${name} head (forward + backward), batch ${N}`, { group: name }, async () => {
    await head.energies(x, N, y, coef, 0);
  });
}
