/**
 * Building blocks of the self-contained HTML report: escaping, tables, figures, embedded PNGs
 * (base64 data: URIs) and the page shell with its inline stylesheet. Nothing here loads from the
 * network and nothing needs JavaScript; every piece of text goes through {@link esc}.
 * @module
 */
import { Buffer } from "node:buffer";

/** Escapes text for HTML content and attribute values. */
export function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

/** A `data:` URI holding `bytes` (e.g. a PNG), base64-encoded. */
export function dataUri(bytes: Uint8Array, mime = "image/png"): string {
  return `data:${mime};base64,${Buffer.from(bytes).toString("base64")}`;
}

/** Options of {@link table}. */
export interface TableOptions {
  /** Column indices to right-align (numbers). */
  numeric?: readonly number[];
  /** Caption above the table. */
  caption?: string;
  /** CSS class of the table ("kv": key/value, long values wrap). */
  cls?: string;
}

/** An HTML table of plain-text cells (each escaped). */
export function table(
  head: readonly string[],
  rows: readonly (readonly string[])[],
  opts: TableOptions = {},
): string {
  const num = new Set(opts.numeric ?? []);
  const td = (tag: string, s: string, i: number) =>
    `<${tag}${num.has(i) ? ` class="num"` : ""}>${esc(s)}</${tag}>`;
  return [
    `<div class="table-wrap"><table${opts.cls ? ` class="${esc(opts.cls)}"` : ""}>`,
    opts.caption ? `<caption>${esc(opts.caption)}</caption>` : "",
    `<thead><tr>${head.map((h, i) => td("th", h, i)).join("")}</tr></thead>`,
    `<tbody>`,
    ...rows.map((r) => `<tr>${r.map((c, i) => td("td", c, i)).join("")}</tr>`),
    `</tbody></table></div>`,
  ].join("\n");
}

/** A two-column key/value table. */
export function keyValues(pairs: readonly (readonly [string, string])[], caption?: string): string {
  return table(["", ""], pairs, { caption, cls: "kv" }).replace(/<thead>.*?<\/thead>/s, "");
}

/** An inline SVG figure (trusted markup from lib/plot) with an escaped caption. */
export function svgFigure(svg: string, caption: string): string {
  return `<figure class="plot">${svg.trim()}<figcaption>${esc(caption)}</figcaption></figure>`;
}

/** Width and height of a PNG from its IHDR chunk; throws when `bytes` is not a PNG. */
export function pngSize(bytes: Uint8Array): { width: number; height: number } {
  const sig = [137, 80, 78, 71, 13, 10, 26, 10];
  if (bytes.length < 24 || sig.some((b, i) => bytes[i] !== b)) {
    throw new Error("not a PNG file (bad signature); pass the grid.png a run wrote");
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { width: v.getUint32(16), height: v.getUint32(20) };
}

/** An embedded PNG figure, shown `scale` times its size without smoothing (pixel art). */
export function pngFigure(bytes: Uint8Array, caption: string, scale = 2): string {
  const { width, height } = pngSize(bytes);
  return `<figure class="grid"><img class="pixels" width="${width * scale}" ` +
    `height="${height * scale}" alt="${esc(caption)}" src="${dataUri(bytes)}">` +
    `<figcaption style="max-width:${Math.max(200, width * scale)}px">${esc(caption)}` +
    `</figcaption></figure>`;
}

/** A paragraph of escaped text. */
export function para(text: string, cls?: string): string {
  return `<p${cls ? ` class="${cls}"` : ""}>${esc(text)}</p>`;
}

/** A bulleted list of escaped lines. */
export function list(lines: readonly string[], cls?: string): string {
  if (lines.length === 0) return "";
  return `<ul${cls ? ` class="${cls}"` : ""}>${
    lines.map((l) => `<li>${esc(l)}</li>`).join("")
  }</ul>`;
}

/** A collapsed block showing a value as pretty JSON (the resolved configuration). */
export function jsonDetails(summary: string, value: unknown): string {
  return `<details><summary>${esc(summary)}</summary><pre>${
    esc(JSON.stringify(value, null, 2))
  }</pre></details>`;
}

/** One section of the report. */
export interface ReportSection {
  /** Heading. */
  title: string;
  /** Where it came from (a path), shown under the heading. */
  source: string;
  /** Body markup (built from the helpers above). */
  html: string;
}

const CSS = `
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px auto;
  max-width: 1200px; padding: 0 16px; color: #222; line-height: 1.4; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 19px; margin-top: 36px; border-bottom: 2px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.source { color: #666; font-size: 12px; font-family: "DejaVu Sans Mono", monospace;
  margin-top: -6px; word-break: break-all; }
.table-wrap { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: 13px; }
caption { text-align: left; font-weight: bold; padding: 4px 0; }
th, td { border: 1px solid #d6d6d6; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
table:not(.kv) td { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 10px 0 18px; }
figure.plot svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #555; margin-top: 4px; max-width: 900px; }
.gallery { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.gallery figure { margin: 0; }
img.pixels { image-rendering: pixelated; image-rendering: crisp-edges; display: block;
  border: 1px solid #ccc; }
.notes { color: #7a4b00; font-size: 13px; }
.muted { color: #666; font-size: 13px; }
nav ul { columns: 2; font-size: 13px; }
details { margin: 6px 0 12px; font-size: 12px; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; max-height: 360px; }
`;

/** The whole page: title, table of contents, notes, then the sections in order. */
export function page(
  title: string,
  intro: readonly string[],
  notes: readonly string[],
  sections: readonly ReportSection[],
): string {
  const toc = sections.map((s, i) => `<li><a href="#sec-${i + 1}">${esc(s.title)}</a></li>`);
  return [
    `<!DOCTYPE html>`,
    `<html lang="en"><head><meta charset="utf-8">`,
    `<meta name="viewport" content="width=device-width, initial-scale=1">`,
    `<title>${esc(title)}</title><style>${CSS}</style></head><body>`,
    `<h1>${esc(title)}</h1>`,
    ...intro.map((l) => para(l, "muted")),
    sections.length ? `<nav><ul>${toc.join("")}</ul></nav>` : para("No sections.", "notes"),
    notes.length ? `<h3>Notes</h3>${list(notes, "notes")}` : "",
    ...sections.map((s, i) =>
      `<section id="sec-${i + 1}"><h2>${esc(s.title)}</h2>` +
      `<div class="source">${esc(s.source)}</div>\n${s.html}</section>`
    ),
    `</body></html>`,
    ``,
  ].join("\n");
}
