/**
 * Making the batch dimension of a fixed-batch classifier dynamic. Exporters that traced a
 * batch of 1 bake it into Reshape shape constants (`x.view(1, -1)` becomes `Reshape(x, [1, -1])`);
 * those constants are rewritten so the same graph runs any batch N.
 * @module
 */
import { getAttr, type GraphBuilder, nodeLabel } from "../onnx/builder.ts";
import { reachableFrom } from "./_graph.ts";

/** One rewritten Reshape: the node and its shape constant before and after. */
export interface BatchRewrite {
  /** Name of the Reshape node (or its output when unnamed). */
  node: string;
  /** The shape constant as exported, e.g. [1, -1]. */
  from: number[];
  /** The shape constant in the head, e.g. [0, -1]. */
  to: number[];
}

/**
 * Rewrites the graph behind `b` so that every value computed from `input` keeps a dynamic
 * batch dimension 0:
 *
 * - a Reshape on the path whose constant shape starts with 1 gets -1 there when no other entry
 *   is -1 (the batch is inferred), else 0 ("copy dimension 0 of the data", the batch);
 * - a Flatten with axis 0 on the path (it would merge the batch into one row) is an error;
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
  graph.value_info = (graph.value_info ?? []).filter((v) => !onPath.has(v.name));
  return rewrites;
}

/** Removes the initializer or Constant node called `name` once no node reads it. */
function dropIfUnused(b: GraphBuilder, name: string): void {
  const g = b.graph;
  if (g.node.some((n) => n.input.includes(name)) || g.output.some((v) => v.name === name)) return;
  g.initializer = (g.initializer ?? []).filter((t) => t.name !== name);
  g.node = g.node.filter((n) => !(n.op_type === "Constant" && n.output[0] === name));
}
