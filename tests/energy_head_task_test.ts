// Task `energy-head`: writes a head that loads and matches the classifier; flags are validated.
import assert from "node:assert/strict";
import { energyHeadTask, numberListFlag } from "../tasks/energy_head.ts";
import { UsageError } from "../tasks/_args.ts";
import { readHeadInfo } from "../lib/energy/head.ts";
import { decodeModel } from "../lib/onnx/proto.ts";
import { tinyLinear } from "./_energy_models.ts";

Deno.test("energy-head task writes a head atomically and prints a one-line summary", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = `${dir}/cls.onnx`, out = `${dir}/sub/head.onnx`;
    await Deno.writeFile(model, tinyLinear({ flatten: "reshape-1", layout: "nhwc" }).bytes);
    const lines: string[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => lines.push(a.join(" "));
    try {
      await energyHeadTask([
        "--model",
        model,
        "--out",
        out,
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
        "--layout",
        "nhwc",
        "--range",
        "pm1",
      ]);
    } finally {
      console.log = log;
    }
    assert.equal(lines.length, 1);
    assert.match(
      lines[0],
      /K=7, x \[N,3,4,5\] nhwc range pm1 .*1 batch rewrite.*sha256 [0-9a-f]{64}$/,
    );
    const info = readHeadInfo(decodeModel(await Deno.readFile(out)));
    assert.deepEqual([info?.layout, info?.range, info?.mean], ["nhwc", "pm1", [0.5, 0.5, 0.5]]);
    assert.deepEqual([...Deno.readDirSync(`${dir}/sub`)].map((e) => e.name), ["head.onnx"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("energy-head task rejects bad flags with usage errors", async () => {
  assert.deepEqual(numberListFlag("mean", "0.1, 0.2,0.3"), [0.1, 0.2, 0.3]);
  assert.throws(() => numberListFlag("mean", "0.1,,0.3"), UsageError);
  const bad: Array<[string[], RegExp]> = [
    [["--out", "h.onnx"], /--model is required/],
    [["--model", "m.onnx"], /--out is required/],
    [["--model", "m.onnx", "--out", "h.bin"], /end the name with \.onnx/],
    [
      ["--model", "m.onnx", "--out", "h.onnx", "--range", "0255"],
      /--range '0255' is invalid: use one of 01, pm1/,
    ],
    [["--model", "m.onnx", "--out", "h.onnx", "--std", "1,1,1"], /--std was given without --mean/],
    [
      ["--model", "m.onnx", "--out", "h.onnx", "--mean", "a,b,c", "--std", "1,1,1"],
      /--mean 'a,b,c' is invalid/,
    ],
    [["--model", "m.onnx", "--out", "h.onnx", "--batch", "3"], /Unknown option '--batch'/],
  ];
  for (const [args, re] of bad) {
    await assert.rejects(
      () => energyHeadTask(args),
      (e: Error) => e instanceof UsageError && re.test(e.message),
    );
  }
});
