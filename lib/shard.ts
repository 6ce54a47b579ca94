/**
 * Splitting a run across machines and resuming it (the EDM per-seed idea made operational):
 * `--shard i/n` takes every n-th item of the run (round-robin, so each shard gets every class),
 * every image is written atomically as soon as its batch finishes, and a rerun skips items whose
 * file already exists. Because each image depends only on its own seed, a resumed or sharded
 * run writes the same images as one uninterrupted run.
 * @module
 */
import { createHash } from "node:crypto";
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

/** Hex sha256 of a config.json text (shard records carry it; merge compares). */
export function configSha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/**
 * Seeds as compact ranges ("0-999", "0-3,10,20-21"), the inverse of parseSeeds for a list
 * without repeats: config.json stays a few bytes for any run size.
 */
export function formatSeeds(seeds: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < seeds.length;) {
    let j = i;
    while (j + 1 < seeds.length && seeds[j + 1] === seeds[j] + 1) j++;
    parts.push(j > i ? `${seeds[i]}-${seeds[j]}` : `${seeds[i]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/**
 * Claims `<out>/config.json` for a run configuration, atomically: the complete file is written
 * under a temp name and hard-linked to config.json, which fails when config.json exists, so of
 * workers started at the same moment exactly one creates it and every other one compares with
 * it: an identical configuration (another shard, or a rerun) is accepted, another one refused.
 * Returns the sha256 of config.json, which shard records carry for `merge` to compare.
 */
export async function claimRunFolder(out: string, config: unknown): Promise<string> {
  const path = `${out}/config.json`;
  const text = stableJson(config);
  let existing = await readIfExists(path);
  if (existing === undefined) {
    await Deno.mkdir(out, { recursive: true });
    const tmp = `${path}.tmp-${Deno.pid}-${Math.random().toString(36).slice(2)}`;
    await Deno.writeTextFile(tmp, text);
    try {
      await Deno.link(tmp, path); // create-exclusive: AlreadyExists when another worker won
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) {
        // no hard links here (some network file systems): create-exclusive open instead
        await createExclusive(path, text).catch((e2) => {
          if (!(e2 instanceof Deno.errors.AlreadyExists)) throw e2;
        });
      }
    } finally {
      await Deno.remove(tmp).catch(() => {});
    }
    existing = await readComplete(path);
  }
  if (existing !== text) {
    throw new UsageError(
      `${out} holds a run with another configuration (${path}); use a new --out, or delete the ` +
        `folder to start over (a rerun with the same flags resumes it)`,
    );
  }
  return configSha256(text);
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

async function createExclusive(path: string, text: string): Promise<void> {
  const f = await Deno.open(path, { createNew: true, write: true });
  try {
    await f.write(new TextEncoder().encode(text));
  } finally {
    f.close();
  }
}

/** Reads config.json, waiting briefly while a create-exclusive writer is still writing it. */
async function readComplete(path: string): Promise<string> {
  for (let i = 0;; i++) {
    const t = await Deno.readTextFile(path);
    if (t.endsWith("}\n") || i >= 40) return t;
    await new Promise((r) => setTimeout(r, 25));
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
