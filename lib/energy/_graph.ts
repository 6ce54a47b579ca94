/**
 * Internal graph helpers for the energy head: real inputs, value renaming, reachability.
 * Pure functions over a {@link GraphProto}; not public API.
 * @module
 */
import type { GraphProto, ValueInfoProto } from "../onnx/proto.ts";

/** Graph inputs that are not initializers (old exporters list every weight as an input too). */
export function realInputs(graph: GraphProto): ValueInfoProto[] {
  const inits = new Set((graph.initializer ?? []).map((t) => t.name));
  return graph.input.filter((v) => !inits.has(v.name));
}

/** Every value name the graph mentions: inputs, outputs, initializers, node inputs/outputs. */
export function valueNames(graph: GraphProto): Set<string> {
  const names = new Set<string>();
  for (const v of [...graph.input, ...graph.output, ...(graph.value_info ?? [])]) names.add(v.name);
  for (const t of graph.initializer ?? []) if (t.name) names.add(t.name);
  for (const n of graph.node) for (const v of [...n.input, ...n.output]) if (v) names.add(v);
  return names;
}

/** Renames value `from` to `to` everywhere in the graph (node edges, inputs, outputs, weights). */
export function renameValue(graph: GraphProto, from: string, to: string): void {
  for (const n of graph.node) {
    n.input = n.input.map((v) => v === from ? to : v);
    n.output = n.output.map((v) => v === from ? to : v);
  }
  for (const v of [...graph.input, ...graph.output, ...(graph.value_info ?? [])]) {
    if (v.name === from) v.name = to;
  }
  for (const t of graph.initializer ?? []) if (t.name === from) t.name = to;
}

/** Values computed from `start` (including it), following node edges forward. */
export function reachableFrom(graph: GraphProto, start: string): Set<string> {
  const seen = new Set([start]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const n of graph.node) {
      if (!n.input.some((v) => seen.has(v))) continue;
      for (const o of n.output) {
        if (o && !seen.has(o)) {
          seen.add(o);
          grew = true;
        }
      }
    }
  }
  return seen;
}
