import { createRequire } from 'node:module';

/**
 * The CLI's version, read from its package.json (works from src/ and dist/), with a leading
 * `v` as Litestream prints its own (`v0.3.13`) in `version` and in the start-up log line.
 */
export function cliVersion(): string {
  try {
    const require = createRequire(import.meta.url);
    const pkg = require('../package.json') as { version?: unknown };
    return typeof pkg.version === 'string' ? `v${pkg.version}` : '(development build)';
  } catch {
    return '(development build)';
  }
}
