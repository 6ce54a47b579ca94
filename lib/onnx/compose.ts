/**
 * Composing ONNX graphs: one model inlined into another under a name prefix, its inputs bound
 * to values of the host graph. Used to build x_t -> denoiser -> x0_hat -> classifier as one graph
 * (lib/energy/through_denoiser.ts) so that lib/autodiff differentiates the whole chain.
 * @module
 */
import type { GraphBuilder } from "./builder.ts";
import type { GraphProto, ModelProto } from "./proto.ts";

/**
 * Inlines `part` into the graph of `host`: every value and node name of `part` gets `prefix`
 * (which must contain "/", a character the builder's fresh names never use, so the inlined names
 * cannot collide with names the host makes later), each of its graph inputs is bound to the host
 * value `bind[input]` through an Identity, and its initializers and nodes are appended. Returns
 * the host names of `part`'s graph outputs, in order. `part` must target the host's default
 * opset (raise it first with `upgradeOpset`); nodes of other domains keep their domain and the
 * host imports the highest version of each. `part` is edited (renamed) in place: pass a copy.
 */
export function inlineModel(
  host: GraphBuilder,
  part: ModelProto,
  prefix: string,
  bind: Readonly<Record<string, string>>,
): string[] {
  if (!prefix.includes("/")) {
    throw new Error(`inlineModel: prefix '${prefix}' must contain '/' (see the doc)`);
  }
  const partOpset = defaultOpset(part);
  if (partOpset !== host.opset) {
    throw new Error(
      `inlineModel: the inlined model targets opset ${partOpset} but the host graph ${host.opset}; ` +
        `raise both to the same opset first (upgradeOpset)`,
    );
  }
  // Decoded with the full onnx.proto, a model keeps its local functions though ModelProto omits them.
  if (((part as { functions?: unknown[] }).functions ?? []).length > 0) {
    throw new Error(
      `inlineModel: the inlined model defines local functions, which are not supported; export it ` +
        `without functions (inline them)`,
    );
  }
  const g = part.graph;
  const inits = new Set((g.initializer ?? []).map((t) => t.name));
  const inputs = g.input.filter((v) => !inits.has(v.name));
  for (const v of inputs) {
    if (bind[v.name] === undefined) {
      throw new Error(
        `inlineModel: input '${v.name}' of the inlined model is not bound; bind it to a value of ` +
          `the host graph (bound: ${Object.keys(bind).join(", ") || "none"})`,
      );
    }
  }
  prefixGraph(g, prefix);
  const hg = host.graph;
  for (const v of inputs) {
    host.node("Identity", [bind[v.name.slice(prefix.length)]], {}, { outputs: [v.name] });
  }
  hg.initializer!.push(...(g.initializer ?? []));
  hg.value_info!.push(...(g.value_info ?? []));
  hg.node.push(...g.node);
  const model = host.toModel();
  model.opset_import ??= [];
  for (const imp of part.opset_import ?? []) {
    if (!imp.domain || imp.domain === "ai.onnx") continue;
    const have = model.opset_import.find((o) => o.domain === imp.domain);
    if (!have) model.opset_import.push({ ...imp });
    else have.version = Math.max(have.version ?? 1, imp.version ?? 1);
  }
  model.ir_version = Math.max(model.ir_version ?? 0, part.ir_version ?? 0);
  return g.output.map((o) => o.name);
}

/**
 * Renames every value and node of `graph` to `prefix + name`: inputs, outputs, initializers,
 * value_info (shape hints, kept for static shape inference), node edges and names.
 * Throws on subgraph attributes (If, Loop, Scan), whose outer-scope references it would miss.
 */
export function prefixGraph(graph: GraphProto, prefix: string): void {
  const p = (v: string) => v ? prefix + v : v; // "" marks an omitted optional input
  for (const n of graph.node) {
    if ((n.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length > 0)) {
      throw new Error(
        `cannot inline node '${n.name}' (${n.op_type}): it holds a subgraph; control flow is ` +
          `not supported in composed graphs`,
      );
    }
    n.input = n.input.map(p);
    n.output = n.output.map(p);
    if (n.name) n.name = prefix + n.name;
  }
  for (const v of [...graph.input, ...graph.output, ...(graph.value_info ?? [])]) {
    v.name = p(v.name);
  }
  for (const t of graph.initializer ?? []) if (t.name) t.name = p(t.name);
}

function defaultOpset(model: ModelProto): number {
  const imp = (model.opset_import ?? []).find((o) => !o.domain || o.domain === "ai.onnx");
  return imp?.version ?? 1;
}
