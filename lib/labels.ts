/**
 * Class names of a classifier with any number of classes (issue 13 item 7). K always comes from
 * the classifier's graph; the names come, in this order, from a labels file (`--labels <file>`,
 * one name per line), the manifest entry's `labels` file (same format, relative to the weights
 * folder) or `classes` list, CIFAR-10's names for a 10-class model the manifest marks as CIFAR-10
 * (`dataset: "cifar10"`), else `class0`..`class{K-1}`. `--class`
 * takes indices or names; errors about a large label set list a few names, never all of them.
 * @module
 */
import { CIFAR10_CLASSES } from "./data/cifar10.ts";

/** Where a classifier's class names came from. */
export type ClassNameOrigin = "labels-file" | "manifest" | "cifar10" | "index";

/** Reads a manifest entry's `labels` file (relative to the weights folder `base`), if it has one. */
export async function readManifestLabels(
  entry: { labels?: string } | undefined,
  base: URL,
): Promise<ClassNameSources["manifestLabels"]> {
  if (!entry?.labels) return undefined;
  const url = new URL(entry.labels, base);
  try {
    const text = url.protocol === "file:"
      ? await Deno.readTextFile(url)
      : await (await fetch(url).then((r) => {
        if (!r.ok) throw new Error(`GET answered ${r.status}`);
        return r;
      })).text();
    return { path: url.href, text };
  } catch (e) {
    throw new Error(
      `the manifest's labels file ${url.href} cannot be read (${(e as Error).message}); ` +
        `restore it or pass --labels <file>`,
    );
  }
}

/** A classifier's class names, one per class, all distinct, and where they came from. */
export interface ClassNames {
  /** K names; duplicates of the source are made distinct with `#<index>`. */
  names: string[];
  /** Where they came from. */
  origin: ClassNameOrigin;
}

/** What {@link resolveClassNames} reads (the manifest fields of the classifier, when it has an entry). */
export interface ClassNameSources {
  /** Text of a labels file and its path (for errors), from `--labels`. */
  labelsFile?: { path: string; text: string };
  /** Text of the manifest entry's `labels` file and its location (for errors). */
  manifestLabels?: { path: string; text: string };
  /** The manifest entry's class names. */
  classes?: readonly string[];
  /** The manifest entry's dataset ("cifar10" marks CIFAR-10). */
  dataset?: string;
  /** Names the classifier in errors (its path or manifest id). */
  model?: string;
}

/** How many names an error message shows before "...". */
const SHOWN = 8;

/** "a, b, c, ... (K classes)": at most {@link SHOWN} names of a label set. */
export function someNames(names: readonly string[]): string {
  if (names.length <= SHOWN + 2) return names.join(", ");
  return `${names.slice(0, SHOWN).join(", ")}, ... ${names[names.length - 1]} ` +
    `(${names.length} classes)`;
}

/**
 * Parses a labels file: one class name per line (surrounding whitespace trimmed; blank lines
 * only at the end; a leading "index " or "index:" before each name is not stripped). Throws
 * naming the file when its count is not K or a name cannot be a folder name.
 */
export function parseLabelsText(
  text: string,
  path: string,
  K: number,
  what = "--labels",
): string[] {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/).map((l) => l.trim());
  while (lines.length && lines[lines.length - 1] === "") lines.pop();
  const blank = lines.indexOf("");
  if (blank >= 0) {
    throw new Error(
      `${what} ${path}: line ${blank + 1} is blank; write one class name per line ` +
        `(${K} lines for this classifier), no blank lines between them`,
    );
  }
  if (lines.length !== K) {
    throw new Error(
      `${what} ${path} has ${lines.length} names but the classifier has K=${K} classes ` +
        `(from its graph); give one name per class, in the order of its logits`,
    );
  }
  lines.forEach((name, i) => checkName(name, `${what} ${path} line ${i + 1}`));
  return lines;
}

/** Names become folder names (images/<class>/): no path separators, no "." or "..". */
function checkName(name: string, where: string): void {
  // deno-lint-ignore no-control-regex
  if (/[/\\\x00-\x1f]/.test(name) || name === "." || name === "..") {
    throw new Error(
      `${where}: class name '${name}' cannot be a folder name (no '/', '\\', control ` +
        `characters, '.' or '..'); rename it`,
    );
  }
}

/** Repeated names (ImageNet has some) get `#<index>` so every class has its own name and folder. */
function distinct(names: readonly string[]): string[] {
  const count = new Map<string, number>();
  for (const n of names) count.set(n.toLowerCase(), (count.get(n.toLowerCase()) ?? 0) + 1);
  return names.map((n, i) => count.get(n.toLowerCase())! > 1 ? `${n}#${i}` : n);
}

/**
 * The class names of a K-class classifier (see the module doc for the order of sources).
 * Throws when a labels file or the manifest's list does not have K names.
 */
export function resolveClassNames(K: number, src: ClassNameSources = {}): ClassNames {
  if (!Number.isInteger(K) || K < 1) {
    throw new Error(`class count K=${K} is not a positive integer`);
  }
  if (src.labelsFile) {
    return {
      names: distinct(parseLabelsText(src.labelsFile.text, src.labelsFile.path, K)),
      origin: "labels-file",
    };
  }
  if (src.manifestLabels) {
    return {
      names: distinct(
        parseLabelsText(src.manifestLabels.text, src.manifestLabels.path, K, "manifest labels"),
      ),
      origin: "manifest",
    };
  }
  if (src.classes) {
    if (src.classes.length !== K) {
      throw new Error(
        `the manifest lists ${src.classes.length} class names for ${
          src.model ?? "the classifier"
        } ` +
          `but its graph has K=${K} classes; fix the manifest's "classes" or pass --labels <file>`,
      );
    }
    src.classes.forEach((n, i) => checkName(n, `manifest "classes"[${i}]`));
    return { names: distinct(src.classes), origin: "manifest" };
  }
  if (src.dataset?.toLowerCase() === "cifar10" && K === CIFAR10_CLASSES.length) {
    return { names: [...CIFAR10_CLASSES], origin: "cifar10" };
  }
  return { names: Array.from({ length: K }, (_, i) => `class${i}`), origin: "index" };
}

/** Reads `--labels <path>` (or nothing) into the `labelsFile` source. */
export async function readLabelsFile(
  path: string | undefined,
): Promise<ClassNameSources["labelsFile"]> {
  if (path === undefined) return undefined;
  try {
    return { path, text: await Deno.readTextFile(path) };
  } catch (e) {
    throw new Error(
      `--labels ${path} cannot be read (${(e as Error).message}); pass a text file with one ` +
        `class name per line`,
    );
  }
}

/**
 * Parses `--class`: `all` (default), or a comma-separated list of indices and names (names match
 * case-insensitively; a name holding commas matches when the whole value is that name). Throws
 * naming the value and a few valid names.
 */
export function parseClassArg(
  raw: string | undefined,
  names: readonly string[],
  flag = "--class",
): number[] {
  if (raw === undefined || raw.trim() === "all") return names.map((_, i) => i);
  const lower = names.map((n) => n.toLowerCase());
  const byName = (p: string) => lower.indexOf(p.toLowerCase());
  const whole = byName(raw.trim());
  if (whole >= 0 && !/^\d+$/.test(raw.trim())) return [whole];
  return raw.split(",").map((part) => {
    const p = part.trim();
    if (/^\d+$/.test(p)) {
      const k = Number(p);
      if (k >= names.length) {
        throw new Error(
          `${flag} ${p} is out of range: the classifier has ${names.length} classes, indices ` +
            `0..${names.length - 1} (${someNames(names)})`,
        );
      }
      return k;
    }
    const k = byName(p);
    if (k >= 0) return k;
    const repeated = lower.flatMap((n, i) => n.startsWith(`${p.toLowerCase()}#`) ? [names[i]] : []);
    throw new Error(
      repeated.length
        ? `${flag} '${p}' names several classes (${
          repeated.join(", ")
        }); pass one of those or an index`
        : `${flag} '${p}' is not a class name of this classifier; use a name (${
          someNames(names)
        }), an index 0..${names.length - 1}, or all`,
    );
  });
}
