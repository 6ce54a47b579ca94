// A small, well-separated Gaussian mixture used by several tests.
import { type GaussianMixture, gaussianMixture } from "../lib/models/mixture.ts";
import { RandomStream } from "../lib/random.ts";

/** Image shape of the test mixture. */
export const MIX_SHAPE = { c: 3, h: 8, w: 8 };

/** K = 3 components in D = 192 dims; means ~ N(0, 0.5^2) per pixel; std 0.1..0.2. */
export function testMixture(): GaussianMixture {
  const d = MIX_SHAPE.c * MIX_SHAPE.h * MIX_SHAPE.w;
  const rng = new RandomStream(2024);
  const means = Array.from({ length: 3 * d }, () => 0.5 * rng.normal());
  return gaussianMixture(means, [0.2, 0.3, 0.5], [0.01, 0.04, 0.02]);
}
