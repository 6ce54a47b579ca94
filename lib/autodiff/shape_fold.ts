/**
 * Shapes known before differentiation: a pass that propagates the graph inputs' shapes (the
 * batch a symbol) through the whole graph, evaluates the shape sub-graphs exporters write
 * (Shape -> Gather/Slice -> Unsqueeze/Squeeze -> Concat -> Reshape/Expand/Tile/
 * ConstantOfShape/Range, with Cast and arithmetic on shapes) on symbolic values, folds every
 * such value that is fully known into an initializer, and records every known shape as
 * graph.value_info, so that each gradient rule sees static ranks and, where they exist, static
 * sizes (`static_info.ts` reads value_info first).
 *
 * Dimensions are numbers, symbols (strings: a declared dim_param, written "param:NAME" as in
 * static_info.ts; the same symbol is the same size throughout a graph, as in the ONNX IR) or
 * unknown. Small integer tensors also carry their values, entry by entry, in the same terms.
 * Nothing is guessed: an op this pass does not know leaves its outputs unknown, and a value is
 * folded only when every entry is a number.
 * @module
 */
import { type DecodedAttr, getAttr, type GraphBuilder } from "../onnx/builder.ts";
import { DataType, type NodeProto, type TensorProto, type ValueInfoProto } from "../onnx/proto.ts";
import { makeTensor, tensorToFloat64 } from "../onnx/tensor.ts";
import { parseEinsum } from "./rules_linear.ts";
import { broadcastDims, type StaticDim, staticElemType, windowOutputShape } from "./static_info.ts";

/** A small tensor's entries: numbers, symbols or unknown (row-major). */
type Entries = StaticDim[];

/** What the pass knows about one value. */
interface Known {
  shape?: StaticDim[];
  /** Entries of a small integer (or shape-derived float) tensor. */
  value?: Entries;
  type?: number;
}

/** Largest tensor whose entries are tracked (shape vectors and small index tensors). */
const MAX_TRACKED = 64;

const INT_TYPES = new Set([DataType.INT64, DataType.INT32, 6, 7, 5, 3, 2, 12, 13]);

/** Result of {@link foldShapes}. */
export interface FoldReport {
  /** Nodes replaced by constants (their values were fully known). */
  folded: number;
  /** Reshape shape inputs rewritten to a constant with -1 for the one symbolic entry. */
  reshapes: number;
  /** value_info entries written. */
  shapes: number;
  /** Nodes removed because nothing read them any more. */
  removed: number;
}

/**
 * Propagates shapes through the graph in `b` (see the module doc), folds fully known shape
 * values into initializers, rewrites Reshape shapes known up to one symbol, removes nodes no
 * longer read by anything reaching `keep` (the values that must survive, e.g. the outputs),
 * and replaces graph.value_info with every shape now known. Returns what it did.
 */
export function foldShapes(b: GraphBuilder, keep: readonly string[]): FoldReport {
  const g = b.graph;
  const known = inferAll(b);
  const report: FoldReport = { folded: 0, reshapes: 0, shapes: 0, removed: 0 };
  const nodes: NodeProto[] = [];
  for (const n of g.node) {
    const outs = n.output.filter((o) => o);
    const allKnown = outs.length > 0 && n.op_type !== "Constant" && outs.every((o) => {
      const k = known.get(o);
      return k?.value && k.shape && k.shape.every((d) => typeof d === "number") &&
        k.value.every((v) => typeof v === "number") && k.type !== undefined &&
        (INT_TYPES.has(k.type) || k.type === DataType.FLOAT || k.type === DataType.DOUBLE ||
          k.type === DataType.BOOL);
    });
    if (allKnown && !isRandom(n)) {
      for (const o of outs) {
        const k = known.get(o)!;
        g.initializer!.push(tensorOf(o, k.shape as number[], k.value as number[], k.type!));
      }
      report.folded++;
      continue;
    }
    if (n.op_type === "Reshape" && Number(getAttr(n, "allowzero", 0)) === 0) {
      const v = known.get(n.input[1])?.value;
      const syms = v?.filter((d) => typeof d === "string") ?? [];
      if (
        v && syms.length === 1 && v.every((d) => d !== undefined) && !v.includes(-1) &&
        !b.constantValue(n.input[1])
      ) {
        const to = v.map((d) => typeof d === "string" ? -1 : d as number);
        n.input[1] = b.i64(`${n.input[1]}_folded`, to);
        report.reshapes++;
      }
    }
    nodes.push(n);
  }
  g.node = nodes;
  report.removed = removeDead(b, keep);
  const defined = new Set<string>([
    ...g.input.map((v) => v.name),
    ...g.output.map((v) => v.name),
    ...(g.initializer ?? []).map((t) => t.name ?? ""),
  ]);
  const infos: ValueInfoProto[] = [];
  for (const n of g.node) {
    for (const o of n.output) {
      const k = o ? known.get(o) : undefined;
      if (!o || defined.has(o) || !k?.shape || k.type === undefined) continue;
      infos.push(infoOf(o, k.type, k.shape));
    }
  }
  g.value_info = infos;
  report.shapes = infos.length;
  return report;
}

function isRandom(n: NodeProto): boolean {
  return n.op_type.startsWith("Random") || n.op_type === "Multinomial" ||
    n.op_type === "Bernoulli";
}

/** A value_info with dim_value, dim_param (symbols) or an empty dimension (unknown). */
function infoOf(name: string, type: number, shape: readonly StaticDim[]): ValueInfoProto {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: type,
        shape: {
          dim: shape.map((d) =>
            typeof d === "number"
              ? { dim_value: d }
              : typeof d === "string"
              ? { dim_param: d.replace(/^param:/, "") }
              : {}
          ),
        },
      },
    },
  } as ValueInfoProto;
}

function tensorOf(name: string, dims: number[], values: number[], type: number): TensorProto {
  if (type === DataType.FLOAT) return makeTensor(name, dims, Float32Array.from(values));
  if (type === DataType.DOUBLE) return makeTensor(name, dims, Float64Array.from(values));
  if (type === DataType.INT32) return makeTensor(name, dims, Int32Array.from(values));
  if (type === DataType.BOOL) {
    return { ...makeTensor(name, dims, Uint8Array.from(values)), data_type: DataType.BOOL };
  }
  if (type === DataType.INT64) {
    return makeTensor(name, dims, BigInt64Array.from(values.map((v) => BigInt(v))));
  }
  throw new Error(`internal: cannot fold a tensor of type ${type}`);
}

/** Removes nodes none of whose outputs is read by a kept node or listed in `keep`. */
function removeDead(b: GraphBuilder, keep: readonly string[]): number {
  const g = b.graph;
  const needed = new Set<string>([...keep, ...g.output.map((v) => v.name)]);
  const kept: NodeProto[] = [];
  for (let i = g.node.length - 1; i >= 0; i--) {
    const n = g.node[i];
    if (!n.output.some((o) => o && needed.has(o))) continue;
    kept.push(n);
    for (const v of n.input) if (v) needed.add(v);
    for (const a of n.attribute ?? []) if (a.g) { for (const v of outerNames(a.g)) needed.add(v); }
  }
  const removed = g.node.length - kept.length;
  g.node = kept.reverse();
  g.initializer = (g.initializer ?? []).filter((t) => needed.has(t.name ?? ""));
  return removed;
}

/** Every input name a sub-graph's nodes read (conservatively: all of them). */
function outerNames(sub: { node: NodeProto[] }): string[] {
  return sub.node.flatMap((n) => n.input);
}

/** Shapes, types and small values of every value of the graph, in one forward sweep. */
export function inferAll(b: GraphBuilder): Map<string, Known> {
  const g = b.graph;
  const known = new Map<string, Known>();
  for (const t of g.initializer ?? []) {
    if (!t.name) continue;
    const dims = (t.dims ?? []).map(Number);
    const size = dims.reduce((a, d) => a * d, 1);
    const type = t.data_type;
    known.set(t.name, {
      shape: dims,
      type,
      value: size <= MAX_TRACKED && isNumeric(type) ? [...tensorToFloat64(t)] : undefined,
    });
  }
  for (const v of g.input) {
    if (known.has(v.name)) continue;
    const tt = v.type?.tensor_type;
    known.set(v.name, {
      type: tt?.elem_type,
      shape: tt?.shape ? (tt.shape.dim ?? []).map(dimOf) : undefined,
    });
  }
  const declared = new Map<string, ValueInfoProto>();
  for (const v of g.value_info ?? []) declared.set(v.name, v);
  for (const n of g.node) {
    let outs: Known[] = [];
    try {
      outs = inferNode(b, n, (v) => (v ? known.get(v) : undefined) ?? {});
    } catch {
      outs = [];
    }
    n.output.forEach((o, i) => {
      if (!o) return;
      const k: Known = outs[i] ?? {};
      if (k.type === undefined) k.type = staticElemType(b, o);
      if (!k.shape) {
        // A declared shape (off the batch path, or from the exporter) is taken as is.
        const d = declared.get(o)?.type?.tensor_type?.shape;
        if (d) k.shape = (d.dim ?? []).map(dimOf);
      }
      if (k.value && k.shape && k.shape.some((d) => typeof d !== "number")) k.value = undefined;
      known.set(o, k);
    });
  }
  return known;
}

function isNumeric(type: number | undefined): boolean {
  return type !== undefined && (INT_TYPES.has(type) || type === DataType.FLOAT ||
    type === DataType.DOUBLE || type === DataType.BOOL);
}

function dimOf(d: { dim_value?: number | bigint; dim_param?: string }): StaticDim {
  if (d.dim_param) return `param:${d.dim_param}`;
  return d.dim_value !== undefined && d.dim_value !== null ? Number(d.dim_value) : undefined;
}

function ints(n: NodeProto, name: string): number[] | undefined {
  const v = getAttr<DecodedAttr | undefined>(n, name, undefined);
  return Array.isArray(v) ? v.map(Number) : undefined;
}

function int(n: NodeProto, name: string, fallback: number): number {
  return Number(getAttr(n, name, fallback));
}

/** Entries of a 1-D (or scalar) input as plain numbers, when every one is a number. */
function numbers(k: Known): number[] | undefined {
  return k.value && k.value.every((v) => typeof v === "number") ? k.value as number[] : undefined;
}

/**
 * A dimension as a monomial c * s1 * s2 ...: symbols multiply into canonical compound symbols
 * ("param:4*N" is four times N), so that a window partition's [N * 4, 64, C] is one size
 * throughout the graph. Equal strings denote equal sizes; nothing else is assumed.
 */
interface Monomial {
  c: number;
  syms: string[];
}

function monomial(d: StaticDim): Monomial | undefined {
  if (typeof d === "number") return { c: d, syms: [] };
  if (typeof d !== "string") return undefined;
  const m: Monomial = { c: 1, syms: [] };
  for (const p of d.replace(/^param:/, "").split("*")) {
    if (/^[0-9]+$/.test(p)) m.c *= Number(p);
    else m.syms.push(p);
  }
  return m;
}

function fromMonomial(m: Monomial): StaticDim {
  if (m.syms.length === 0 || m.c === 0) return m.c;
  const parts = [...(m.c === 1 ? [] : [String(m.c)]), ...[...m.syms].sort()];
  return `param:${parts.join("*")}`;
}

/** a * b for dims (numbers, symbols, compound symbols). */
function dimMul(a: StaticDim, b: StaticDim): StaticDim {
  const [x, y] = [monomial(a), monomial(b)];
  return x && y ? fromMonomial({ c: x.c * y.c, syms: [...x.syms, ...y.syms] }) : undefined;
}

/** a / b for dims when it divides exactly (b's symbols among a's, b's number dividing a's). */
function dimDiv(a: StaticDim, b: StaticDim): StaticDim {
  const [x, y] = [monomial(a), monomial(b)];
  if (!x || !y || y.c === 0 || x.c % y.c !== 0) return undefined;
  const syms = [...x.syms];
  for (const s of y.syms) {
    const i = syms.indexOf(s);
    if (i < 0) return undefined;
    syms.splice(i, 1);
  }
  return fromMonomial({ c: x.c / y.c, syms });
}

/** Product of dims (a number when all are numbers; a compound symbol with symbols). */
function dimProduct(s: readonly StaticDim[]): StaticDim {
  return s.reduce<StaticDim>((acc, d) => dimMul(acc, d), 1);
}

const size = (s: readonly StaticDim[]) =>
  s.every((d) => typeof d === "number") ? (s as number[]).reduce((a, d) => a * d, 1) : undefined;

/** a op b on dims/entries: numbers exactly; with symbols only the neutral cases. */
function arith(op: string, a: StaticDim, c: StaticDim, integer: boolean): StaticDim {
  if (typeof a === "number" && typeof c === "number") {
    switch (op) {
      case "Add":
        return a + c;
      case "Sub":
        return a - c;
      case "Mul":
        return a * c;
      case "Div":
        return c === 0 ? undefined : integer ? Math.trunc(a / c) : a / c;
      case "Max":
        return Math.max(a, c);
      case "Min":
        return Math.min(a, c);
      case "Mod":
        return c === 0 ? undefined : a - Math.floor(a / c) * c;
    }
    return undefined;
  }
  if (op === "Mul") return dimMul(a, c);
  if (op === "Div" && integer) return dimDiv(a, c);
  if ((op === "Add" || op === "Sub") && c === 0) return a;
  if (op === "Add" && a === 0) return c;
  if (op === "Div" && c === 1) return a;
  if ((op === "Max" || op === "Min") && a === c) return a;
  return undefined;
}

/** Entries of `k` broadcast to `shape` (both small and static). */
function broadcastEntries(k: Known, shape: readonly number[]): Entries | undefined {
  if (!k.value || !k.shape || !k.shape.every((d) => typeof d === "number")) return undefined;
  const src = k.shape as number[];
  const total = shape.reduce((a, d) => a * d, 1);
  if (total > MAX_TRACKED) return undefined;
  const pad = [...Array(shape.length - src.length).fill(1), ...src];
  const out: Entries = [];
  for (let i = 0; i < total; i++) {
    let rem = i, flat = 0, stride = 1;
    const idx: number[] = [];
    for (let a = shape.length - 1; a >= 0; a--) {
      idx[a] = rem % shape[a];
      rem = Math.floor(rem / shape[a]);
    }
    for (let a = shape.length - 1; a >= 0; a--) {
      flat += (pad[a] === 1 ? 0 : idx[a]) * stride;
      stride *= pad[a];
    }
    out.push(k.value[flat]);
  }
  return out;
}

/** Output shape of Reshape from the input shape and the (symbolic) target entries. */
function reshapeShape(x: StaticDim[] | undefined, to: Entries, allowzero: boolean): StaticDim[] {
  const out = to.map((d, i) => (d === 0 && !allowzero ? x?.[i] : d));
  const minus = out.indexOf(-1);
  if (minus < 0) return out;
  out[minus] = undefined;
  if (!x) return out;
  // total(x) / product(other entries), as monomials (numbers and symbols cancel).
  out[minus] = dimDiv(dimProduct(x), dimProduct(out.filter((_, i) => i !== minus)));
  return out;
}

/** Normalised axis. */
const ax = (a: number, r: number) => (a < 0 ? a + r : a);

/** Shapes (and small values) of the outputs of node `n`. */
function inferNode(b: GraphBuilder, n: NodeProto, get: (v: string) => Known): Known[] {
  if (n.domain && n.domain !== "ai.onnx") return [];
  const op = n.op_type;
  const X = get(n.input[0]);
  const xs = X.shape;
  const same = (): Known[] => [{ shape: xs, type: X.type }];
  switch (op) {
    case "Constant": {
      const c = b.constantValue(n.output[0]);
      const t = getAttr(n, "value") as TensorProto | undefined;
      if (!c) return [];
      return [{
        shape: c.dims.map(Number),
        type: t?.data_type,
        value: c.values.length <= MAX_TRACKED && isNumeric(t?.data_type)
          ? [...c.values]
          : undefined,
      }];
    }
    case "Identity":
    case "Dropout":
      return [{ ...X }];
    case "Shape": {
      if (!xs) return [{ type: DataType.INT64 }];
      const start = ax(int(n, "start", 0), xs.length);
      const endRaw = getAttr<DecodedAttr | undefined>(n, "end", undefined);
      const end = endRaw === undefined ? xs.length : ax(Number(endRaw), xs.length);
      const lo = Math.max(0, Math.min(start, xs.length));
      const hi = Math.max(lo, Math.min(end, xs.length));
      const value = xs.slice(lo, hi);
      return [{ shape: [value.length], type: DataType.INT64, value }];
    }
    case "Size":
      return [{ shape: [], type: DataType.INT64, value: xs ? [size(xs)] : undefined }];
    case "Cast": {
      const to = int(n, "to", 0);
      let value = X.value;
      if (value && INT_TYPES.has(to)) {
        value = value.map((v) => typeof v === "number" ? Math.trunc(v) : v);
      }
      if (value && to === DataType.BOOL) {
        value = value.map((v) => typeof v === "number" ? (v !== 0 ? 1 : 0) : undefined);
      }
      return [{ shape: xs, type: to, value }];
    }
    case "CastLike":
      return [{ shape: xs, type: get(n.input[1]).type, value: X.value }];
    case "Gather": {
      const I = get(n.input[1]);
      if (!xs || !I.shape) return [{ type: X.type }];
      const axis = ax(int(n, "axis", 0), xs.length);
      const shape = [...xs.slice(0, axis), ...I.shape, ...xs.slice(axis + 1)];
      let value: Entries | undefined;
      const idx = numbers(I);
      if (X.value && idx && xs.length === 1 && typeof xs[0] === "number") {
        value = idx.map((i) => X.value![i < 0 ? i + (xs[0] as number) : i]);
      }
      return [{ shape, type: X.type, value }];
    }
    case "Unsqueeze":
    case "Squeeze": {
      const axes = ints(n, "axes") ?? (n.input[1] ? numbers(get(n.input[1])) : undefined);
      if (!xs) return [{ type: X.type }];
      let shape: StaticDim[] | undefined;
      if (op === "Unsqueeze") {
        if (!axes) return [{ type: X.type }];
        const outRank = xs.length + axes.length;
        const at = new Set(axes.map((a) => ax(a, outRank)));
        const rest = [...xs];
        shape = Array.from({ length: outRank }, (_, i) => (at.has(i) ? 1 : rest.shift()));
      } else if (axes) {
        const at = new Set(axes.map((a) => ax(a, xs.length)));
        shape = xs.filter((_, i) => !at.has(i));
      } else if (xs.every((d) => d !== undefined && typeof d === "number")) {
        shape = xs.filter((d) => d !== 1);
      }
      return [{ shape, type: X.type, value: shape ? X.value : undefined }];
    }
    case "Concat": {
      const parts = n.input.map(get);
      if (!parts.every((p) => p.shape)) return [{ type: X.type }];
      const rank = parts[0].shape!.length;
      const axis = ax(int(n, "axis", 0), rank);
      const shape = [...parts[0].shape!];
      let total: StaticDim = 0;
      for (const p of parts) total = arith("Add", total, p.shape![axis], true);
      shape[axis] = total;
      for (let i = 0; i < rank; i++) {
        if (i === axis) continue;
        shape[i] = parts.map((p) => p.shape![i]).find((d) => d !== undefined);
      }
      const value = rank === 1 && parts.every((p) => p.value)
        ? parts.flatMap((p) => p.value!)
        : undefined;
      return [{ shape, type: X.type, value }];
    }
    case "Slice": {
      if (!xs) return [{ type: X.type }];
      const unknown = (): Known[] => [{ shape: xs.map(() => undefined), type: X.type }];
      const attrForm = n.input.length === 1;
      const opt = (i: number) => (n.input[i] ? numbers(get(n.input[i])) : undefined);
      const starts = attrForm ? ints(n, "starts") : opt(1);
      const ends = attrForm ? ints(n, "ends") : opt(2);
      const axesGiven = attrForm ? ints(n, "axes") : opt(3);
      const steps = attrForm ? undefined : opt(4);
      if (!starts || !ends) return unknown();
      if (!attrForm && ((n.input[3] && !axesGiven) || (n.input[4] && !steps))) return unknown();
      const axes = (axesGiven ?? starts.map((_, i) => i)).map((a) => ax(a, xs.length));
      const shape = [...xs];
      let picks: number[] | undefined;
      for (let k = 0; k < axes.length; k++) {
        const a = axes[k], dim = xs[a], step = steps?.[k] ?? 1;
        if (typeof dim !== "number") {
          // A whole-axis slice of a symbolic axis keeps it.
          const whole = step === 1 && starts[k] === 0 && ends[k] >= 2 ** 31 - 1;
          shape[a] = whole ? dim : undefined;
          continue;
        }
        const idx = sliceIndices(dim, starts[k], ends[k], step);
        shape[a] = idx.length;
        if (a === 0) picks = idx;
      }
      let value: Entries | undefined;
      if (X.value && xs.length === 1) value = picks ? picks.map((i) => X.value![i]) : X.value;
      return [{ shape, type: X.type, value }];
    }
    case "Reshape": {
      const to = get(n.input[1]).value;
      if (!to) {
        const len = get(n.input[1]).shape?.[0];
        return [{
          shape: typeof len === "number" ? Array(len).fill(undefined) : undefined,
          type: X.type,
        }];
      }
      const shape = reshapeShape(xs, to, int(n, "allowzero", 0) === 1);
      return [{ shape, type: X.type, value: X.value }];
    }
    case "Flatten": {
      if (!xs) return [{ type: X.type }];
      const axis = ax(int(n, "axis", 1), xs.length);
      const prod = (s: StaticDim[]) => dimProduct(s);
      return [{ shape: [prod(xs.slice(0, axis)), prod(xs.slice(axis))], type: X.type }];
    }
    case "Transpose": {
      if (!xs) return [{ type: X.type }];
      const perm = ints(n, "perm") ?? xs.map((_, i) => xs.length - 1 - i);
      return [{ shape: perm.map((p) => xs[p]), type: X.type }];
    }
    case "ConstantOfShape": {
      const v = get(n.input[0]).value;
      const t = getAttr(n, "value") as TensorProto | undefined;
      const type = t?.data_type ?? DataType.FLOAT;
      const fill = t ? tensorToFloat64(t)[0] : 0;
      if (!v) {
        const len = get(n.input[0]).shape?.[0];
        return [{ shape: typeof len === "number" ? Array(len).fill(undefined) : undefined, type }];
      }
      const total = size(v);
      return [{
        shape: v,
        type,
        value: total !== undefined && total <= MAX_TRACKED ? Array(total).fill(fill) : undefined,
      }];
    }
    case "Range": {
      const [s, l, d] = [1, 2, 3].map((i) => numbers(get(n.input[i - 1]))?.[0]);
      if (s === undefined || l === undefined || d === undefined || d === 0) {
        return [{ shape: [undefined], type: X.type }];
      }
      const count = Math.max(Math.ceil((l - s) / d), 0);
      return [{
        shape: [count],
        type: X.type,
        value: count <= MAX_TRACKED
          ? Array.from({ length: count }, (_, i) => s + i * d)
          : undefined,
      }];
    }
    case "Expand": {
      const to = get(n.input[1]).value;
      if (!xs || !to) return [{ type: X.type }];
      const shape = broadcastDims([xs, to.map((d) => (d === 1 ? 1 : d))]);
      // Expand's 1 entries keep x's size: broadcastDims does exactly that.
      const value = shape.every((d) => typeof d === "number")
        ? broadcastEntries(X, shape as number[])
        : undefined;
      return [{ shape, type: X.type, value }];
    }
    case "Tile": {
      const reps = numbers(get(n.input[1]));
      if (!xs || !reps) return [{ shape: xs?.map(() => undefined), type: X.type }];
      return [{ shape: xs.map((d, i) => arith("Mul", d, reps[i], true)), type: X.type }];
    }
    case "Add":
    case "Sub":
    case "Mul":
    case "Div":
    case "Max":
    case "Min":
    case "Mod":
    case "Pow":
    case "Sum":
    case "Mean":
    case "Equal":
    case "Less":
    case "Greater":
    case "LessOrEqual":
    case "GreaterOrEqual":
    case "And":
    case "Or":
    case "Where": {
      const ins = n.input.map(get);
      const shapes = ins.map((k) => k.shape);
      const shape = shapes.every((s) => s) ? broadcastDims(shapes as StaticDim[][]) : undefined;
      const cmp = ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or"];
      const type = cmp.includes(op) ? DataType.BOOL : op === "Where" ? ins[1].type : X.type;
      let value: Entries | undefined;
      if (shape && shape.every((d) => typeof d === "number") && ins.every((k) => k.value)) {
        const full = ins.map((k) => broadcastEntries(k, shape as number[]));
        if (full.every((f) => f)) value = elementwise(op, full as Entries[], type);
      }
      return [{ shape, type, value }];
    }
    case "Neg":
    case "Abs":
    case "Floor":
    case "Ceil":
    case "Round":
    case "Sqrt":
    case "Not": {
      const f = {
        Neg: (v: number) => -v,
        Abs: Math.abs,
        Floor: Math.floor,
        Ceil: Math.ceil,
        Round: roundHalfEven,
        Sqrt: Math.sqrt,
        Not: (v: number) => (v ? 0 : 1),
      }[op]!;
      return [{
        shape: xs,
        type: X.type,
        value: X.value?.map((v) => (typeof v === "number" ? f(v) : undefined)),
      }];
    }
    case "MatMul": {
      const ys = get(n.input[1]).shape;
      if (!xs || !ys) return [{ type: X.type }];
      if (xs.length === 1 && ys.length === 1) return [{ shape: [], type: X.type }];
      const a = xs.length === 1 ? [1, xs[0]] : xs, c = ys.length === 1 ? [ys[0], 1] : ys;
      const batch = broadcastDims([a.slice(0, -2), c.slice(0, -2)]);
      const shape = [...batch, a[a.length - 2], c[c.length - 1]];
      if (xs.length === 1) shape.splice(shape.length - 2, 1);
      if (ys.length === 1) shape.pop();
      return [{ shape, type: X.type }];
    }
    case "Gemm": {
      const ys = get(n.input[1]).shape;
      if (!xs || !ys) return [{ shape: [undefined, undefined], type: X.type }];
      const m = int(n, "transA", 0) ? xs[1] : xs[0];
      const k = int(n, "transB", 0) ? ys[0] : ys[1];
      return [{ shape: [m, k], type: X.type }];
    }
    case "Conv":
    case "MaxPool":
    case "AveragePool":
    case "LpPool": {
      const ws = op === "Conv" ? get(n.input[1]).shape : undefined;
      const shape = windowOutputShape(n, xs, ws);
      return op === "MaxPool" ? [{ shape, type: X.type }, { shape, type: DataType.INT64 }] : [{
        shape,
        type: X.type,
      }];
    }
    case "ConvTranspose":
      return [{ shape: xs?.map(() => undefined), type: X.type }];
    case "GlobalAveragePool":
    case "GlobalMaxPool":
    case "GlobalLpPool":
      return [{ shape: xs?.map((d, i) => (i < 2 ? d : 1)), type: X.type }];
    case "Split": {
      if (!xs) return n.output.map(() => ({ type: X.type }));
      const axis = ax(int(n, "axis", 0), xs.length);
      const dim = xs[axis];
      let parts = ints(n, "split") ?? (n.input[1] ? numbers(get(n.input[1])) : undefined);
      if (!parts && typeof dim === "number") {
        const k = n.output.length, chunk = Math.ceil(dim / k);
        parts = Array.from({ length: k }, (_, i) => Math.max(0, Math.min(chunk, dim - i * chunk)));
      }
      return n.output.map((_, i) => {
        const shape = [...xs];
        shape[axis] = parts?.[i];
        const value = X.value && xs.length === 1 && parts
          ? X.value.slice(parts.slice(0, i).reduce((a, p) => a + p, 0)).slice(0, parts[i])
          : undefined;
        return { shape, type: X.type, value };
      });
    }
    case "ReduceSum":
    case "ReduceMean":
    case "ReduceMax":
    case "ReduceMin":
    case "ReduceProd":
    case "ReduceL1":
    case "ReduceL2":
    case "ReduceLogSum":
    case "ReduceLogSumExp":
    case "ReduceSumSquare":
    case "ArgMax":
    case "ArgMin": {
      const type = op.startsWith("Arg") ? DataType.INT64 : X.type;
      if (!xs) return [{ type }];
      const keep = int(n, "keepdims", 1) === 1;
      let axes: number[] | undefined;
      if (op.startsWith("Arg")) axes = [int(n, "axis", 0)];
      else {
        axes = ints(n, "axes");
        if (!axes && n.input[1]) axes = numbers(get(n.input[1]));
        if (!axes && n.input[1]) return [{ type }];
        if (!axes || axes.length === 0) {
          axes = int(n, "noop_with_empty_axes", 0) === 1 ? [] : xs.map((_, i) => i);
        }
      }
      const at = new Set(axes.map((a) => ax(a, xs.length)));
      const shape = keep ? xs.map((d, i) => (at.has(i) ? 1 : d)) : xs.filter((_, i) => !at.has(i));
      return [{ shape, type }];
    }
    case "Resize": {
      if (!xs) return [{ type: X.type }];
      const axes = (ints(n, "axes") ?? xs.map((_, i) => i)).map((a) => ax(a, xs.length));
      const scales = n.input[2] ? numbers(get(n.input[2])) : undefined;
      const sizes = n.input[3] ? numbers(get(n.input[3])) : undefined;
      const policy = String(getAttr(n, "keep_aspect_ratio_policy", "stretch"));
      if (policy !== "stretch") return [{ shape: xs.map(() => undefined), type: X.type }];
      const shape = [...xs];
      axes.forEach((a, k) => {
        if (sizes && sizes.length) shape[a] = sizes[k];
        else if (scales && scales.length) {
          shape[a] = scales[k] === 1
            ? xs[a]
            : typeof xs[a] === "number"
            ? Math.floor(Math.fround((xs[a] as number) * Math.fround(scales[k])))
            : undefined;
        } else shape[a] = undefined;
      });
      return [{ shape, type: X.type }];
    }
    case "Pad": {
      if (!xs) return [{ type: X.type }];
      const pads = n.input[1] ? numbers(get(n.input[1])) : ints(n, "pads");
      if (!pads) return [{ shape: xs.map(() => undefined), type: X.type }];
      const axes = n.input[3] ? numbers(get(n.input[3])) : xs.map((_, i) => i);
      if (!axes) return [{ shape: xs.map(() => undefined), type: X.type }];
      const shape = [...xs];
      axes.forEach((a0, k) => {
        const a = ax(a0, xs.length);
        shape[a] = arith("Add", arith("Add", xs[a], pads[k], true), pads[k + axes.length], true);
      });
      return [{ shape, type: X.type }];
    }
    case "Einsum":
      return [{ shape: einsumShape(n, n.input.map((v) => get(v).shape)), type: X.type }];
    case "OneHot": {
      const depth = numbers(get(n.input[1]))?.[0];
      if (!xs) return [{ type: get(n.input[2]).type }];
      const axis = ax(int(n, "axis", -1), xs.length + 1);
      const shape = [...xs];
      shape.splice(axis, 0, depth);
      return [{ shape, type: get(n.input[2]).type }];
    }
    case "DepthToSpace":
    case "SpaceToDepth": {
      if (!xs || xs.length !== 4) return [{ type: X.type }];
      const s = int(n, "blocksize", 1);
      const [N, C, H, W] = xs;
      const up = op === "DepthToSpace";
      return [{
        shape: [
          N,
          arith(up ? "Div" : "Mul", C, s * s, true),
          arith(up ? "Mul" : "Div", H, s, true),
          arith(up ? "Mul" : "Div", W, s, true),
        ],
        type: X.type,
      }];
    }
    case "BatchNormalization":
    case "LayerNormalization":
      return [same()[0]];
  }
  if (SAME_SHAPE_OPS.has(op)) return same();
  return [];
}

/** Output shape of an Einsum from its operands' shapes (letters by size, ellipsis broadcast). */
function einsumShape(
  n: NodeProto,
  shapes: (StaticDim[] | undefined)[],
): StaticDim[] | undefined {
  const eq = parseEinsum(String(getAttr(n, "equation", "")));
  if (eq.inputs.length !== shapes.length || shapes.some((s) => !s)) return undefined;
  const letters = new Map<string, StaticDim>();
  const ellipses: StaticDim[][] = [];
  for (const [k, term] of eq.inputs.entries()) {
    const dims = shapes[k]!;
    const e = term.indexOf("...");
    const width = dims.length - (term.length - (e >= 0 ? 1 : 0));
    if (width < 0 || (e < 0 && width !== 0)) return undefined;
    let j = 0;
    for (const t of term) {
      if (t === "...") {
        ellipses.push(dims.slice(j, j + width));
        j += width;
        continue;
      }
      const d = dims[j++], had = letters.get(t);
      if (had === undefined || had === 1 || (typeof d === "number" && d !== 1)) letters.set(t, d);
    }
  }
  const ell = broadcastDims(ellipses);
  return eq.output.flatMap((t) => (t === "..." ? ell : [letters.get(t)]));
}

/** Ops whose first output has exactly the shape and type of their first input. */
const SAME_SHAPE_OPS = new Set([
  "Relu",
  "LeakyRelu",
  "PRelu",
  "Sigmoid",
  "Tanh",
  "Exp",
  "Log",
  "Reciprocal",
  "Softmax",
  "LogSoftmax",
  "Hardmax",
  "Softplus",
  "Softsign",
  "Elu",
  "Selu",
  "Celu",
  "Gelu",
  "Erf",
  "HardSigmoid",
  "HardSwish",
  "Mish",
  "ThresholdedRelu",
  "Clip",
  "Sin",
  "Cos",
  "Sign",
  "InstanceNormalization",
  "GroupNormalization",
  "LRN",
  "LpNormalization",
  "MeanVarianceNormalization",
  "CumSum",
  "Trilu",
  "IsNaN",
  "IsInf",
]);

function roundHalfEven(v: number): number {
  const f = Math.floor(v), d = v - f;
  if (d !== 0.5) return Math.round(v);
  return f % 2 === 0 ? f : f + 1;
}

function elementwise(op: string, ins: Entries[], type: number | undefined): Entries {
  const integer = type !== undefined && INT_TYPES.has(type);
  return ins[0].map((_, i) => {
    const vs = ins.map((e) => e[i]);
    switch (op) {
      case "Where": {
        const [c, a, b] = vs;
        return typeof c === "number" ? (c ? a : b) : undefined;
      }
      case "Equal": {
        const [a, b] = vs;
        if (a === undefined || b === undefined) return undefined;
        if (a === b) return 1;
        if (typeof a === "number" && typeof b === "number") return 0;
        // A symbol is a size: never negative.
        const num = typeof a === "number" ? a : b as number;
        return typeof num === "number" && num < 0 ? 0 : undefined;
      }
      case "Less":
      case "Greater":
      case "LessOrEqual":
      case "GreaterOrEqual": {
        const [a, b] = vs;
        if (typeof a !== "number" || typeof b !== "number") return undefined;
        const r = op === "Less"
          ? a < b
          : op === "Greater"
          ? a > b
          : op === "LessOrEqual"
          ? a <= b
          : a >= b;
        return r ? 1 : 0;
      }
      case "And":
      case "Or": {
        const [a, b] = vs;
        if (typeof a !== "number" || typeof b !== "number") return undefined;
        return (op === "And" ? a && b : a || b) ? 1 : 0;
      }
      case "Pow": {
        const [a, b] = vs;
        return typeof a === "number" && typeof b === "number" ? a ** b : undefined;
      }
      case "Sum":
        return vs.reduce((acc, v) => arith("Add", acc, v, integer), 0 as StaticDim);
      case "Mean":
        return undefined;
      default:
        return vs.slice(1).reduce((acc, v) => arith(op, acc, v, integer), vs[0]);
    }
  });
}

/** Indices a Slice picks on an axis of length `dim` (ONNX Slice-13 clamping rules). */
function sliceIndices(dim: number, start: number, end: number, step: number): number[] {
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  if (step > 0) {
    s = clamp(s, 0, dim);
    e = clamp(e, 0, dim);
  } else {
    s = clamp(s, -1, dim - 1);
    e = clamp(e, -1, dim - 1);
  }
  const out: number[] = [];
  for (let i = s; step > 0 ? i < e : i > e; i += step) out.push(i);
  return out;
}
