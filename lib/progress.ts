/**
 * Progress lines on stderr: count, rate and ETA, at most a few per second. Rate and ETA come from
 * the last minute of progress, so a job whose later units cost more (robust-accuracy's last
 * classifier, a sweep's bigger guide) gets an ETA that follows the current pace.
 * @module
 */

/** Seconds of history the rate is measured over. */
export const RATE_WINDOW_S = 60;

/** One observation: `done` units at `sec` seconds after the start. */
export interface ProgressSample {
  sec: number;
  done: number;
}

/**
 * Units per second over the last {@link RATE_WINDOW_S} seconds of `history` (oldest first, the
 * current sample last): from the newest sample at least that old (or the oldest) to the current
 * one. 0 before any time has passed.
 */
export function recentRate(history: readonly ProgressSample[]): number {
  const cur = history[history.length - 1];
  if (!cur) return 0;
  let from = history[0];
  for (const s of history) {
    if (cur.sec - s.sec >= RATE_WINDOW_S) from = s;
    else break;
  }
  const dt = cur.sec - from.sec;
  return dt > 1e-9 ? (cur.done - from.done) / dt : 0;
}

/** Creates a progress reporter for `total` units of `unit`; call the result with the done count. */
export function progress(label: string, total: number, unit = "it"): (done: number) => void {
  const t0 = performance.now();
  let last = -Infinity;
  const enc = new TextEncoder();
  const quiet = Deno.env.get("RG_QUIET") === "1";
  // A terminal gets one line rewritten in place; a log file gets whole lines, less often.
  const tty = Deno.stderr.isTerminal();
  const every = tty ? 500 : 5000;
  const history: ProgressSample[] = [{ sec: 0, done: 0 }];
  return (done: number) => {
    const now = performance.now();
    const sec = (now - t0) / 1000;
    history.push({ sec, done });
    // keep one sample older than the window, drop the rest of the old ones
    while (history.length > 2 && sec - history[1].sec >= RATE_WINDOW_S) history.shift();
    if (quiet || (now - last < every && done < total)) return;
    last = now;
    const rate = recentRate(history);
    const eta = rate > 0 ? (total - done) / rate : Infinity;
    const line =
      `${label} ${done}/${total} ${unit}  ${rate.toFixed(rate < 10 ? 2 : 0)} ${unit}/s  ` +
      `elapsed ${fmtTime(sec)}  ETA ${Number.isFinite(eta) ? fmtTime(eta) : "?"}`;
    const text = tty ? (done >= total ? `\r${line}\n` : `\r${line}`) : `${line}\n`;
    Deno.stderr.writeSync(enc.encode(text));
  };
}

function fmtTime(s: number): string {
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${Math.round(s % 60)}s` : `${Math.floor(m / 60)}h${m % 60}m`;
}
