/**
 * Making the batch dimension of a fixed-batch classifier dynamic. Exporters that traced a
 * batch of 1 bake it into Reshape shape constants (`x.view(1, -1)` becomes `Reshape(x, [1, -1])`);
 * those constants are rewritten so the same graph runs any batch N.
 * @module
 */
import { getAttr, type GraphBuilder, nodeLabel } from "../onnx/builder.ts";
import { inferAll } from "../autodiff/shape_fold.ts";
import type { NodeProto } from "../onnx/proto.ts";
import { reachableFrom } from "./_graph.ts";

/**
 * One rewritten node: a Reshape and its shape constant before and after, or a Concat input of
 * batch 1 (a class token) expanded to the batch: `from` its shape, `to` the same with -1 (N).
 */
export interface BatchRewrite {
  /** Name of the Reshape or Concat node (or its output when unnamed). */
  node: string;
  /** The shape constant as exported, e.g. [1, -1]; for a Concat input, its shape [1, 1, D]. */
  from: number[];
  /** The shape constant in the head, e.g. [0, -1]; for a Concat input, [-1, 1, D]. */
  to: number[];
}

/**
 * Rewrites the graph behind `b` so that every value computed from `input` keeps a dynamic
 * batch dimension 0:
 *
 * - a Reshape on the path whose constant shape starts with 1 gets -1 there when no other entry
 *   is -1 (the batch is inferred), else 0 ("copy dimension 0 of the data", the batch);
 * - a Flatten with axis 0 on the path (it would merge the batch into one row) is an error;
 * - a Concat along a non-batch axis of a batch value with a constant of batch 1 (the class token
 *   of a ViT exported at batch 1: `cls.expand(1, -1, -1)`) gets the constant expanded to the
 *   batch, Expand(c, [Shape(batch value)[0], c's other sizes]);
 * - shape hints (`value_info`) of values on the path are dropped, since they state batch 1.
 *
 * Shape constants are copied before rewriting, so weights that share them are left alone.
 * The caller sets the graph input and output shapes. Returns what was rewritten.
 */
export function makeBatchDynamic(b: GraphBuilder, input: string): BatchRewrite[] {
  const graph = b.graph;
  const onPath = reachableFrom(graph, input);
  const rewrites: BatchRewrite[] = [];
  for (const node of graph.node) {
    if (!node.input.some((v) => onPath.has(v))) continue;
    if (node.op_type === "Flatten" && getAttr(node, "axis", 1) === 0) {
      throw new Error(
        `${nodeLabel(node)} flattens with axis 0, merging the batch into one row; the ` +
          `classifier cannot run a batch. Re-export it with Flatten(axis=1) (torch.flatten(x, 1))`,
      );
    }
    if (node.op_type !== "Reshape" || !onPath.has(node.input[0])) continue;
    const shapeName = node.input[1];
    if (onPath.has(shapeName)) continue; // computed from the data: already dynamic
    const shape = b.constantValue(shapeName);
    if (!shape) continue; // computed from something else; left to the batch-64 check
    const from = Array.from(shape.values);
    if (from.length === 0 || from[0] !== 1) continue;
    const otherMinusOne = from.slice(1).includes(-1);
    if (otherMinusOne && getAttr(node, "allowzero", 0) === 1) {
      throw new Error(
        `${
          nodeLabel(node)
        } reshapes to [${from}] with allowzero=1, so its batch dimension cannot ` +
          `be made dynamic (0 would mean an empty dimension and -1 is taken); re-export the ` +
          `classifier with a dynamic batch (torch.onnx.export dynamic_axes={'input': {0: 'N'}})`,
      );
    }
    const to = [otherMinusOne ? 0 : -1, ...from.slice(1)];
    node.input[1] = b.i64(`${shapeName}_dynamic_batch`, to);
    rewrites.push({ node: node.name ?? node.output[0], from, to });
    dropIfUnused(b, shapeName);
  }
  rewrites.push(...expandConcatConstants(b, onPath));
  graph.value_info = (graph.value_info ?? []).filter((v) => !onPath.has(v.name));
  return rewrites;
}

/** The Concat rewrite of {@link makeBatchDynamic}: batch-1 constants expanded to the batch. */
function expandConcatConstants(b: GraphBuilder, onPath: Set<string>): BatchRewrite[] {
  const g = b.graph;
  const concats = g.node.filter((n) =>
    n.op_type === "Concat" && (!n.domain || n.domain === "ai.onnx") &&
    n.input.some((v) => onPath.has(v)) && n.input.some((v) => v && !onPath.has(v))
  );
  if (concats.length === 0) return [];
  const known = inferAll(b);
  const rewrites: BatchRewrite[] = [];
  for (const node of concats) {
    const batchValue = node.input.find((v) => onPath.has(v))!;
    const rank = known.get(batchValue)?.shape?.length;
    if (rank === undefined) continue;
    const axisRaw = Number(getAttr(node, "axis", 0));
    if ((axisRaw < 0 ? axisRaw + rank : axisRaw) === 0) continue; // along the batch itself
    node.input.forEach((v, i) => {
      const shape = v && !onPath.has(v) ? known.get(v)?.shape : undefined;
      if (!shape || shape.length !== rank || shape[0] !== 1) return;
      if (!shape.every((d) => typeof d === "number")) return;
      const rest = (shape as number[]).slice(1);
      const first = g.node.length;
      const n = b.node("Gather", [b.node("Shape", [batchValue]), b.i64("batch_index", [0])], {
        axis: 0,
      });
      const target = b.node("Concat", [n, b.i64(`${v}_batch_shape`, rest)], { axis: 0 });
      node.input[i] = b.node("Expand", [v, target]);
      const added: NodeProto[] = g.node.splice(first);
      g.node.splice(g.node.indexOf(node), 0, ...added);
      rewrites.push({
        node: node.name ?? node.output[0],
        from: shape as number[],
        to: [-1, ...rest],
      });
    });
  }
  return rewrites;
}

/** Removes the initializer or Constant node called `name` once no node reads it. */
function dropIfUnused(b: GraphBuilder, name: string): void {
  const g = b.graph;
  if (g.node.some((n) => n.input.includes(name)) || g.output.some((v) => v.name === name)) return;
  g.initializer = (g.initializer ?? []).filter((t) => t.name !== name);
  g.node = g.node.filter((n) => !(n.op_type === "Constant" && n.output[0] === name));
}
