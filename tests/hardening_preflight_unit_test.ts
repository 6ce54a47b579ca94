// Issue 12, item 3: the pre-flight check of a run's models (shapes, class counts, resize).
import assert from "node:assert/strict";
import { checkRunModels } from "../tasks/_preflight.ts";

Deno.test("item 3: checkRunModels: shapes, class counts, and the resize case as one parameter", () => {
  const den = { label: "den.onnx", shape: [3, 32, 32] as [number, number, number] };
  const clf = { label: "clf.onnx", shape: [3, 64, 64] as [number, number, number], numClasses: 10 };
  assert.throws(() => checkRunModels({ denoiser: den, classifier: clf }), /clf\.onnx.*3x64x64/s);
  checkRunModels({ denoiser: den, classifier: clf, resize: true });
  assert.throws(
    () =>
      checkRunModels({
        denoiser: den,
        classifier: { ...clf, shape: [1, 64, 64] },
        resize: true,
      }),
    /channel/,
  );
  assert.throws(
    () =>
      checkRunModels({
        denoiser: den,
        classifier: { ...clf, shape: [3, 32, 32] },
        evaluator: { label: "ev.onnx", shape: [3, 32, 32], numClasses: 100 },
      }),
    /ev\.onnx.*100.*clf\.onnx.*10/s,
  );
  assert.throws(
    () =>
      checkRunModels({
        denoiser: den,
        classifier: { ...clf, shape: [3, 32, 32] },
        classes: [3, 12],
      }),
    /class 12.*clf\.onnx/s,
  );
});
