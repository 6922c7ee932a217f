import { homedir } from 'node:os';
import { resolve } from 'node:path';

/** Expands a leading `~` (or `~/…`) to the home directory, like Litestream's expandHome. */
function expandHome(p: string): string {
  if (p === '~') return homedir();
  if (p.startsWith('~/')) return resolve(homedir(), p.slice(2));
  return p;
}

/** `~`-expands and makes absolute against `cwd`. */
export function absPath(p: string, cwd: string = process.cwd()): string {
  return resolve(cwd, expandHome(p));
}

/** True when `s` looks like a URL (`^\w+://`), Litestream's test. */
export function looksLikeUrl(s: string): boolean {
  return /^\w+:\/\//.test(s);
}
