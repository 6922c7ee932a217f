import { createRequire } from 'node:module';

/** The CLI's version, read from its package.json (works from src/ and dist/). */
export function cliVersion(): string {
  try {
    const require = createRequire(import.meta.url);
    const pkg = require('../package.json') as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '(development build)';
  } catch {
    return '(development build)';
  }
}
