import { formatGoDuration } from '@walship/core';

/**
 * Aligns rows like Go's text/tabwriter as Litestream configures it (padding 2, spaces): every
 * column but the last is padded to its widest cell plus two spaces.
 */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      if (i < row.length - 1) widths[i] = Math.max(widths[i] ?? 0, [...cell].length);
    });
  }
  return rows
    .map((row) => row.map((cell, i) => (i < row.length - 1 ? cell + ' '.repeat(widths[i]! - [...cell].length + 2) : cell)).join(''))
    .map((line) => `${line}\n`)
    .join('');
}

/** RFC 3339 in UTC with seconds precision (`2024-01-02T03:04:05Z`). */
export function formatTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Lowercase hex zero-padded to at least 8 digits, as in replica file names. */
export { formatHex8 as hex8 } from '@walship/core/backend';

/**
 * Litestream's lag display: truncate (toward zero) to seconds above 10 s, tenths above 1 s,
 * milliseconds above 1 ms, microseconds above 1 µs; then Go's Duration.String().
 */
export function formatLag(ms: number): string {
  const a = Math.abs(ms);
  let unit = 0;
  if (a > 10_000) unit = 1000;
  else if (a > 1000) unit = 100;
  else if (a > 1) unit = 1;
  else if (a > 0.001) unit = 0.001;
  const t = unit === 0 ? ms : Math.trunc(ms / unit) * unit;
  return formatGoDuration(Number(t.toFixed(6)));
}

/** `1.5 MiB` style sizes for progress output. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}
