/** Structured fields attached to a log line. Never put credentials in them. */
export type LogFields = Record<string, unknown>;

/**
 * Logger hook. walship never writes to stdout/stderr itself; pass a logger to see its logs.
 * The CLI adapts it to text or JSON lines.
 */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/** A logger that drops everything (the default). */
export const silentLogger: Logger = Object.freeze({
  debug() {},
  info() {},
  warn() {},
  error() {},
});

/** Returns a logger that adds `fields` to every line. */
export function childLogger(parent: Logger, fields: LogFields): Logger {
  return {
    debug: (m, f) => parent.debug(m, { ...fields, ...f }),
    info: (m, f) => parent.info(m, { ...fields, ...f }),
    warn: (m, f) => parent.warn(m, { ...fields, ...f }),
    error: (m, f) => parent.error(m, { ...fields, ...f }),
  };
}
