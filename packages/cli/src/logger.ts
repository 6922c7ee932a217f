import type { LogFields, Logger } from '@walship/core';

export type LogLevel = 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
export type LogFormat = 'text' | 'json';

const LEVEL_RANK: Record<LogLevel, number> = { DEBUG: 0, INFO: 1, WARN: 2, ERROR: 3 };

/** A Logger that can also say whether a level is enabled and print a line at any level. */
export interface CliLogger extends Logger {
  readonly level: LogLevel;
  log(level: LogLevel, message: string, fields?: LogFields): void;
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Where lines go (default process.stdout, as Litestream). */
  stream?: { write(chunk: string): unknown };
  /** Clock, for tests. */
  now?: () => Date;
}

const REDACTED = 'REDACTED';

/**
 * True for field names that may hold credentials: anything containing secret, password,
 * passphrase, token, credential, signature or identity, or ending in `key`/`key-id`
 * (`account-key`, `access-key-id`, `sas-key`, `key`).
 */
export function isSecretKey(name: string): boolean {
  const n = name.toLowerCase().replace(/[-_.\s]/g, '');
  return /secret|passw|passphrase|token|credential|signature|identit|auth|sas/.test(n) || /key(id)?$/.test(n);
}

/** Removes passwords from URLs (`sftp://u:pw@h` → `sftp://u:REDACTED@h`) and signed-URL query secrets. */
export function scrubString(s: string): string {
  return s
    .replace(/([a-z][a-z0-9+.-]*:\/\/[^\s/:@]*):[^\s/@]*@/gi, `$1:${REDACTED}@`)
    .replace(
      /([?&](?:sig|signature|x-amz-signature|x-amz-security-token|x-goog-signature|token|access_token|password)=)[^&\s"]*/gi,
      `$1${REDACTED}`,
    );
}

/** Applies `isSecretKey`/`scrubString` to one field, recursively for plain objects. */
export function redactValue(key: string, value: unknown, depth = 0): unknown {
  if (isSecretKey(key) && value !== undefined && value !== null && value !== '') return REDACTED;
  if (typeof value === 'string') return scrubString(value);
  if (value instanceof Error) return scrubString(value.message.split('\n')[0] ?? '');
  if (value instanceof Date) return value;
  if (Array.isArray(value)) return depth > 4 ? '[…]' : value.map((v) => redactValue('', v, depth + 1));
  if (value && typeof value === 'object') {
    if (depth > 4) return '{…}';
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = redactValue(k, v, depth + 1);
    return out;
  }
  return value;
}

function textValue(value: unknown): string {
  let s: string;
  if (value === undefined) s = '<nil>';
  else if (value === null) s = '<nil>';
  else if (value instanceof Date) s = Number.isNaN(value.getTime()) ? 'invalid-date' : value.toISOString();
  else if (typeof value === 'string') s = value;
  else if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') s = String(value);
  else s = JSON.stringify(value) ?? String(value);
  // Quote like Go's slog text handler: empty, spaces, quotes, `=` or control characters.
  return s === '' || /[\s"=\\\u0000-\u001f\u007f]/.test(s) ? JSON.stringify(s) : s;
}

function jsonValue(value: unknown): unknown {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/** Parses `logging.level` like Litestream (case-insensitive; `WARNING` = `WARN`). */
export function parseLogLevel(s: string): LogLevel | undefined {
  const u = s.trim().toUpperCase();
  if (u === 'DEBUG' || u === 'INFO' || u === 'WARN' || u === 'ERROR') return u;
  if (u === 'WARNING') return 'WARN';
  return undefined;
}

/**
 * A logger writing one line per event: text (`time=… level=INFO msg="…" key=value`, like Go's
 * slog text handler, which Litestream uses) or JSON (`{"time":…,"level":…,"msg":…,…}`).
 * Fields that look like credentials are replaced by `REDACTED`; URL passwords are scrubbed.
 */
export function createLogger(options: LoggerOptions = {}): CliLogger {
  const level = options.level ?? 'INFO';
  const format = options.format ?? 'text';
  const stream = options.stream ?? process.stdout;
  const now = options.now ?? (() => new Date());
  const log = (lvl: LogLevel, message: string, fields?: LogFields): void => {
    if (LEVEL_RANK[lvl] < LEVEL_RANK[level]) return;
    const msg = scrubString(message);
    const entries = Object.entries(fields ?? {})
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, redactValue(k, v)] as const);
    let line: string;
    if (format === 'json') {
      const obj: Record<string, unknown> = { time: now().toISOString(), level: lvl, msg };
      for (const [k, v] of entries) if (!(k in obj)) obj[k] = jsonValue(v);
      line = JSON.stringify(obj);
    } else {
      line = `time=${now().toISOString()} level=${lvl} msg=${textValue(msg)}`;
      for (const [k, v] of entries) line += ` ${/^[^\s"=]+$/.test(k) ? k : JSON.stringify(k)}=${textValue(v)}`;
    }
    try {
      stream.write(`${line}\n`);
    } catch {
      // A closed stdout must never crash replication.
    }
  };
  return {
    level,
    log,
    debug: (m, f) => log('DEBUG', m, f),
    info: (m, f) => log('INFO', m, f),
    warn: (m, f) => log('WARN', m, f),
    error: (m, f) => log('ERROR', m, f),
  };
}
