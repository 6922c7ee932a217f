import { ConfigError } from './errors.js';

/** A duration: milliseconds as a number, or a Go-style string such as `500ms`, `10s`, `1h30m`. */
export type Duration = number | string;

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a Go duration string (`300ms`, `-1.5h`, `2h45m`, `0`) into milliseconds, exactly as
 * Go's time.ParseDuration accepts them (units ns, us/µs, ms, s, m, h; no `d`).
 * @throws ConfigError `invalid duration "<s>": use a number with a unit, e.g. 10s, 5m, 24h`
 */
export function parseGoDuration(input: string): number {
  const s = input.trim();
  const bad = () => new ConfigError(`invalid duration ${JSON.stringify(input)}: use a number with a unit, e.g. 10s, 5m, 24h`);
  if (s === '0' || s === '+0' || s === '-0') return 0;
  let rest = s;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    if (rest[0] === '-') sign = -1;
    rest = rest.slice(1);
  }
  if (rest === '') throw bad();
  let total = 0;
  const re = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (rest.length > 0) {
    const m = re.exec(rest);
    if (!m) throw bad();
    total += parseFloat(m[1]!) * UNIT_MS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return sign * total;
}

/**
 * Normalises a Duration option to milliseconds. Numbers are milliseconds.
 * @throws ConfigError naming `key` when the value is not a valid duration
 */
export function toMillis(value: Duration | undefined, fallback: number, key = 'duration'): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new ConfigError(`invalid ${key}: ${value}`);
    return value;
  }
  if (typeof value === 'string') {
    try {
      return parseGoDuration(value);
    } catch {
      throw new ConfigError(`invalid ${key} ${JSON.stringify(value)}: use a Go duration such as 10s, 5m or 24h`);
    }
  }
  throw new ConfigError(`invalid ${key}: expected a duration string such as 10s`);
}

/** Formats milliseconds like Go's Duration.String() (e.g. `1h30m0s`, `1.5s`, `250ms`). */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  const neg = ms < 0;
  let v = Math.abs(ms);
  let out: string;
  if (v < 1000) {
    if (v >= 1) out = `${trim(v)}ms`;
    else if (v >= 1e-3) out = `${trim(v * 1e3)}µs`;
    else out = `${trim(v * 1e6)}ns`;
  } else {
    const h = Math.floor(v / 3_600_000);
    v -= h * 3_600_000;
    const m = Math.floor(v / 60_000);
    v -= m * 60_000;
    const sec = trim(v / 1000);
    out = h > 0 ? `${h}h${m}m${sec}s` : m > 0 ? `${m}m${sec}s` : `${sec}s`;
  }
  return neg ? `-${out}` : out;
}

function trim(n: number): string {
  return String(Number(n.toFixed(9)));
}
