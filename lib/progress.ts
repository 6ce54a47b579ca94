/**
 * Progress lines on stderr: count, rate and ETA, at most a few per second.
 * @module
 */

/** Creates a progress reporter for `total` units of `unit`; call the result with the done count. */
export function progress(label: string, total: number, unit = "it"): (done: number) => void {
  const t0 = performance.now();
  let last = -Infinity;
  const enc = new TextEncoder();
  const quiet = Deno.env.get("RG_QUIET") === "1";
  // A terminal gets one line rewritten in place; a log file gets whole lines, less often.
  const tty = Deno.stderr.isTerminal();
  const every = tty ? 500 : 5000;
  return (done: number) => {
    const now = performance.now();
    if (quiet || (now - last < every && done < total)) return;
    last = now;
    const sec = (now - t0) / 1000;
    const rate = done / Math.max(sec, 1e-9);
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
