/**
 * The image sets the `evaluate` task reads: a CIFAR-10 split ("test"/"train") or a folder of PNGs
 * (a guide/sample run folder reads its images/ and run.json), described first (for the reference
 * cache key, without decoding), then read into [n, 3, H, W] bytes with labels from class folders.
 * Internal to the tasks.
 * @module
 */
import { resolve } from "node:path";
import { CIFAR10_CLASSES, loadCifar10 } from "../lib/data/cifar10.ts";
import { decodePngs, listPngs, type PngEntry } from "../lib/data/image_folder.ts";
import { progress } from "../lib/progress.ts";
import { sha256Hex } from "../lib/runtime/session.ts";
import { UsageError } from "./_args.ts";
import { DEFAULT_CIFAR10 } from "./build_mixture.ts";

/** Test and train split sizes of the official archive. */
const CIFAR10_SIZES = { test: 10000, train: 50000 } as const;

/** An image set named on the command line, described (for the cache key) before it is read. */
export type SetSource =
  | {
    kind: "cifar10";
    split: "test" | "train";
    count: number;
    description: Record<string, unknown>;
  }
  | {
    kind: "folder";
    root: string;
    entries: PngEntry[];
    runClasses?: string[];
    count: number;
    description: Record<string, unknown>;
  };

/**
 * Describes `--images` or `--reference`: "test"/"train" (CIFAR-10) or a folder of PNGs (a run
 * folder with run.json and images/ reads images/). Lists files but decodes nothing.
 */
export async function describeSet(
  spec: string,
  opts: { data: string; limit?: number; what: string },
): Promise<SetSource> {
  if (spec === "test" || spec === "train") {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(opts.data);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      throw new UsageError(
        `${opts.what} ${spec} needs the CIFAR-10 archive, but '${opts.data}' does not exist; ` +
          `pass it with --data <path> (default ${DEFAULT_CIFAR10}, relative to the repository root)`,
      );
    }
    const count = Math.min(opts.limit ?? Infinity, CIFAR10_SIZES[spec]);
    return {
      kind: "cifar10",
      split: spec,
      count,
      description: {
        kind: "cifar10",
        split: spec,
        archive: resolve(opts.data),
        bytes: info.size,
        mtime: info.mtime?.getTime() ?? null,
        first: count,
      },
    };
  }
  if (!(await isDirectory(spec))) {
    throw new UsageError(
      `${opts.what} '${spec}' is neither test, train nor an existing folder of PNG images`,
    );
  }
  const run = await readRunJson(spec);
  const root = run && await isDirectory(`${spec}/images`) ? `${spec}/images` : spec;
  let entries = await listPngs(root);
  if (entries.length === 0) {
    throw new UsageError(
      `${opts.what} ${spec}: no PNG images under ${root} (searched recursively for *.png); ` +
        `pass a folder of generated images or a guide/sample run folder`,
    );
  }
  if (opts.limit !== undefined) entries = entries.slice(0, opts.limit);
  return {
    kind: "folder",
    root,
    entries,
    runClasses: run?.classes,
    count: entries.length,
    description: {
      kind: "folder",
      path: resolve(root),
      files: await fileListHash(root, entries),
      first: entries.length,
    },
  };
}

/**
 * Reads a described set into [n, 3, H, W] bytes; with `classNames`, also its labels as
 * evaluator class indices (null when a folder has no class folders).
 */
export async function readSet(
  src: SetSource,
  opts: {
    data: string;
    shape: [number, number, number];
    classNames?: string[];
    what: string;
    spec: string;
  },
): Promise<{ images: Uint8Array; count: number; labels: Int32Array | null }> {
  const [c, h, w] = opts.shape;
  if (src.kind === "cifar10") {
    if (c !== 3 || h !== 32 || w !== 32) {
      throw new UsageError(
        `${opts.what} ${src.split} is CIFAR-10 (3x32x32) but the network takes ${c}x${h}x${w} ` +
          `images`,
      );
    }
    let split;
    try {
      split = await loadCifar10(opts.data, src.split, {
        limit: src.count,
      });
    } catch (e) {
      throw new UsageError(`${(e as Error).message} (set the archive with --data <path>)`);
    }
    split.notes?.forEach((n) => console.error(`note: ${n}`));
    const labels = opts.classNames ? cifarLabels(split.labels, opts.classNames) : null;
    return { images: split.images, count: split.count, labels };
  }
  const labels = opts.classNames
    ? folderLabels(src.entries, opts.classNames, src.runClasses, src.root)
    : null;
  const tick = progress(`read ${opts.spec}`, src.entries.length, "png");
  try {
    const decoded = await decodePngs(src.root, src.entries, opts.shape, tick);
    return { images: decoded.images, count: decoded.count, labels };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** CIFAR-10 labels as evaluator class indices (matched by name when the names differ). */
function cifarLabels(labels: Uint8Array, classNames: string[]): Int32Array {
  const same = classNames.length === CIFAR10_CLASSES.length &&
    classNames.every((n, i) => n === CIFAR10_CLASSES[i]);
  if (same) return Int32Array.from(labels);
  const map = CIFAR10_CLASSES.map((n) => classNames.indexOf(n));
  if (map.some((i) => i < 0)) {
    throw new UsageError(
      `the evaluator's ${classNames.length} classes [${classNames.join(", ")}] do not include ` +
        `all 10 CIFAR-10 classes [${CIFAR10_CLASSES.join(", ")}]; pass a CIFAR-10 evaluator`,
    );
  }
  return Int32Array.from(labels, (y) => map[y]);
}

/**
 * Labels from class folders (images/<class>/<file>.png): a folder is a class name of the
 * evaluator or a class index. With run.json classes, every folder must be one of them. Files
 * at the root with no class folders: no labels.
 */
export function folderLabels(
  entries: readonly PngEntry[],
  classNames: readonly string[],
  runClasses: readonly string[] | undefined,
  root: string,
): Int32Array | null {
  const K = classNames.length;
  if (runClasses) {
    const unknown = runClasses.filter((c) => !classNames.includes(c));
    if (unknown.length) {
      throw new UsageError(
        `class mismatch: run.json lists ${runClasses.length} classes [${runClasses.join(", ")}] ` +
          `but the evaluator has ${K} classes [${classNames.join(", ")}]; ` +
          `${unknown.map((u) => `'${u}'`).join(", ")} is not one of them: evaluate with a ` +
          `classifier over the same classes (--evaluator)`,
      );
    }
  }
  const groups = [...new Set(entries.map((e) => e.group))];
  if (groups.length === 1 && groups[0] === "" && !runClasses) return null;
  const index = new Map<string, number>();
  const bad: string[] = [];
  for (const g of groups) {
    let k = classNames.indexOf(g);
    if (k < 0 && /^\d+$/.test(g)) {
      k = Number(g);
      if (k >= K) {
        throw new UsageError(
          `class mismatch: folder ${root}/${g}/ names class index ${g} but the evaluator has ` +
            `${K} classes (0..${K - 1}: ${classNames.join(", ")}); evaluate with a classifier ` +
            `over the same classes (--evaluator)`,
        );
      }
    }
    if (k < 0 || (runClasses && !runClasses.includes(g))) bad.push(g);
    else index.set(g, k);
  }
  if (bad.length) {
    if (!runClasses && index.size === 0) return null; // no class folders: an unlabelled set
    const shown = bad.map((g) =>
      g === "" ? `${root}/ (files outside class folders)` : `${root}/${g}/`
    );
    throw new UsageError(
      `class mismatch: ${shown.join(", ")} ${bad.length > 1 ? "are" : "is"} not ` +
        (runClasses ? `among run.json's classes [${runClasses.join(", ")}]` : `a class folder`) +
        `; the evaluator's ${K} classes are [${classNames.join(", ")}]. Put each image in ` +
        `images/<class>/ or evaluate a folder without class folders`,
    );
  }
  return Int32Array.from(entries, (e) => index.get(e.group)!);
}

/** The `config.classes` of a run folder's run.json, when there is one. */
async function readRunJson(dir: string): Promise<{ classes?: string[] } | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${dir}/run.json`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  let run: { config?: { classes?: unknown } };
  try {
    run = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${dir}/run.json is not valid JSON (${(e as Error).message})`);
  }
  const classes = run.config?.classes;
  if (
    classes !== undefined &&
    !(Array.isArray(classes) && classes.every((c) => typeof c === "string"))
  ) {
    throw new UsageError(`${dir}/run.json config.classes must be a list of class names`);
  }
  return { classes: classes as string[] | undefined };
}

/** sha256 over "path size mtime" lines of the files: changes when any file does. */
async function fileListHash(root: string, entries: readonly PngEntry[]): Promise<string> {
  const lines: string[] = [];
  for (const e of entries) {
    const s = await Deno.stat(`${root}/${e.path}`);
    lines.push(`${e.path}\t${s.size}\t${s.mtime?.getTime() ?? 0}`);
  }
  return sha256Hex(new TextEncoder().encode(lines.join("\n")));
}

/** True when `path` exists and is a folder. */
export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
