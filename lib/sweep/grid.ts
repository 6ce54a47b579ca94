/**
 * The grid of a guidance sweep (METHOD.md §4-6): directions x scales x strength schedules x
 * guiding classifiers, parsed from command-line lists, and one stable folder name (slug) per
 * grid point. Pure functions: no models, no files.
 * @module
 */
import { UsageError } from "../errors.ts";
import { formatStrength, parseStrength } from "../guidance/strength.ts";

/** The guidance directions a sweep can vary (§4.6, §4.8, §4.9). */
export const SWEEP_DIRECTIONS = ["logp", "joint", "dual", "pgd"] as const;

/** One guidance direction name. */
export type SweepDirection = typeof SWEEP_DIRECTIONS[number];

/** One point of the grid: what `guide` is run with, and the folder it writes. */
export interface SweepPoint {
  direction: SweepDirection;
  scale: number;
  /** Strength schedule in canonical form (formatStrength), e.g. "sqrt", "power:2". */
  schedule: string;
  /** Guiding classifier: manifest id or path. */
  classifier: string;
  /** Folder name under `<out>/runs/`, unique within the grid. */
  slug: string;
}

/** Splits a comma list; empty items are an error naming the flag. */
function items(flag: string, raw: string, example: string): string[] {
  const parts = raw.split(",").map((s) => s.trim());
  if (raw.trim() === "" || parts.some((p) => p === "")) {
    throw new UsageError(
      `--${flag} '${raw}' is invalid: give a comma-separated list without empty items, e.g. ` +
        example,
    );
  }
  return parts;
}

/** Throws when a list repeats a value (each grid point would be run twice). */
function unique<T>(flag: string, values: T[], key: (v: T) => string = String): T[] {
  const seen = new Set<string>();
  for (const v of values) {
    const k = key(v);
    if (seen.has(k)) throw new UsageError(`--${flag} lists '${k}' twice; give each value once`);
    seen.add(k);
  }
  return values;
}

/** Parses `--directions joint,logp,...` (each one of {@link SWEEP_DIRECTIONS}). */
export function parseDirections(raw: string): SweepDirection[] {
  const parts = items("directions", raw, "joint,logp");
  for (const p of parts) {
    if (!(SWEEP_DIRECTIONS as readonly string[]).includes(p)) {
      throw new UsageError(
        `--directions '${raw}': '${p}' is not a direction; use any of ${
          SWEEP_DIRECTIONS.join(", ")
        }`,
      );
    }
  }
  return unique("directions", parts as SweepDirection[]);
}

/** Parses `--scales 3,10,30` (finite numbers; a negative one needs `--scales=-1,2`). */
export function parseScales(raw: string): number[] {
  const parts = items("scales", raw, "3,10,30");
  const values = parts.map((p) => {
    const v = Number(p);
    if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(p) || !Number.isFinite(v)) {
      throw new UsageError(
        `--scales '${raw}': '${p}' is not a finite decimal number; write e.g. 3,10,30`,
      );
    }
    return v;
  });
  return unique("scales", values);
}

/**
 * Parses strength-schedule lists into canonical specs. Each value is split on `;` when it holds
 * one, else on `,` where a `,` followed by a number continues the parameters of the spec before
 * it: `sqrt,power:2,sigmoid:0.1,650,0.01` is three schedules, as is
 * `sqrt;power:2;sigmoid:0.1,650,0.01`. `values` are the repeated `--schedules` flags.
 */
export function parseSchedules(values: readonly string[]): string[] {
  const specs: string[] = [];
  for (const raw of values) {
    const hint = "e.g. sqrt,power:2 or 'sqrt;sigmoid:0.1,650,0.01'";
    if (raw.trim() === "") throw new UsageError(`--schedules is empty: give a list, ${hint}`);
    let parts: string[];
    if (raw.includes(";")) {
      parts = raw.split(";").map((s) => s.trim());
    } else {
      parts = [];
      for (const piece of raw.split(",").map((s) => s.trim())) {
        const continues = /^[+-]?(\d|\.\d)/.test(piece) && parts.length > 0;
        if (continues) parts[parts.length - 1] += "," + piece;
        else parts.push(piece);
      }
    }
    for (const p of parts) {
      if (p === "") {
        throw new UsageError(`--schedules '${raw}' has an empty item; ${hint}`);
      }
      try {
        specs.push(formatStrength(parseStrength(p)));
      } catch (e) {
        throw new UsageError(`--schedules '${raw}': ${(e as Error).message}`);
      }
    }
  }
  if (specs.length === 0) throw new UsageError(`--schedules is empty: give at least one schedule`);
  return unique("schedules", specs);
}

/** Parses `--classifiers id,path,...` (manifest ids or .onnx paths). */
export function parseClassifiers(raw: string): string[] {
  return unique("classifiers", items("classifiers", raw, "vnncomp21-resnet4b,vnncomp21-resnet2b"));
}

/** A file-name-safe form of a value: [A-Za-z0-9._-], other runs of characters become '-'. */
export function slugPart(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "") || "x";
}

/** The short name of a classifier reference: a manifest id, or a path's file name without .onnx. */
export function classifierName(ref: string): string {
  const base = ref.split(/[\\/]/).pop() ?? ref;
  return base.replace(/\.onnx$/i, "");
}

/**
 * Every grid point, classifiers outermost, then schedules, directions and scales (the row order
 * of sweep.json), each with a unique slug `<direction>_s<scale>_<schedule>_<classifier>`.
 */
export function sweepPoints(grid: {
  directions: readonly SweepDirection[];
  scales: readonly number[];
  schedules: readonly string[];
  classifiers: readonly string[];
}): SweepPoint[] {
  const points: SweepPoint[] = [];
  const used = new Set<string>();
  for (const classifier of grid.classifiers) {
    for (const schedule of grid.schedules) {
      for (const direction of grid.directions) {
        for (const scale of grid.scales) {
          const base = [
            direction,
            `s${scale}`,
            slugPart(schedule),
            slugPart(classifierName(classifier)),
          ].join("_");
          let slug = base;
          for (let i = 2; used.has(slug); i++) slug = `${base}-${i}`;
          used.add(slug);
          points.push({ direction, scale, schedule, classifier, slug });
        }
      }
    }
  }
  return points;
}
