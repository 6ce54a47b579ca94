/**
 * Splitting a run across machines and resuming it (the EDM per-seed idea made operational):
 * `--shard i/n` takes every n-th item of the run (round-robin, so each shard gets every class),
 * every image is written atomically as soon as its batch finishes, and a rerun skips items whose
 * file already exists. Because each image depends only on its own seed, a resumed or sharded
 * run writes the same images as one uninterrupted run.
 * @module
 */
import { UsageError } from "./errors.ts";

/** Shard `index` (0-based) of `count`. */
export interface Shard {
  index: number;
  count: number;
}

/** Parses "i/n" (0 <= i < n). */
export function parseShard(text: string | undefined): Shard {
  if (text === undefined) return { index: 0, count: 1 };
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (!m || !(Number(m[2]) >= 1) || !(Number(m[1]) < Number(m[2]))) {
    throw new UsageError(
      `--shard '${text}' is invalid: write i/n with 0 <= i < n, e.g. 0/4 (Slurm: ` +
        `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)`,
    );
  }
  return { index: Number(m[1]), count: Number(m[2]) };
}

/** Positions (into the run's item list) that belong to `shard`: every count-th from index. */
export function shardPositions(total: number, shard: Shard): number[] {
  const out: number[] = [];
  for (let p = shard.index; p < total; p += shard.count) out.push(p);
  return out;
}

/** True when a file exists (a finished, atomically written image). */
export async function fileExists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** Stable JSON (sorted keys) of a config, to compare runs writing into one folder. */
export function stableJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_k, v) =>
      v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]]))
        : v,
    2,
  ) + "\n";
}

/**
 * Claims `<out>/config.json` for a run configuration: writes it when absent, accepts it when
 * identical (another shard, or a rerun), and refuses a folder holding a different run.
 */
export async function claimRunFolder(out: string, config: unknown): Promise<void> {
  const path = `${out}/config.json`;
  const text = stableJson(config);
  let existing: string | undefined;
  try {
    existing = await Deno.readTextFile(path);
  } catch {
    await Deno.mkdir(out, { recursive: true });
    const tmp = `${path}.tmp-${Deno.pid}-${Math.random().toString(36).slice(2)}`;
    await Deno.writeTextFile(tmp, text);
    await Deno.rename(tmp, path);
    existing = await Deno.readTextFile(path); // a concurrent shard may have won the race
  }
  if (existing !== text) {
    throw new UsageError(
      `${out} holds a run with another configuration (${path}); use a new --out, or delete the ` +
        `folder to start over (a rerun with the same flags resumes it)`,
    );
  }
}

/** Removes temp files left by killed writers (call only when no worker is running). */
export async function removeStaleTemps(dir: string): Promise<number> {
  let removed = 0;
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (/\.tmp-\d+-[a-z0-9]+$/.test(e.name)) {
        await Deno.remove(p);
        removed++;
      }
    }
  };
  try {
    await walk(dir);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return removed;
}
