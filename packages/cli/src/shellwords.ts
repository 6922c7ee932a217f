import { UsageError } from './errors.js';

/**
 * Splits a command line into words like github.com/mattn/go-shellwords (what Litestream uses
 * for `-exec`): whitespace separates words; single quotes keep everything literally; double
 * quotes group words; a backslash outside single quotes escapes the next character. No
 * variable, backtick or glob expansion happens and no shell is involved.
 * @throws UsageError for an unclosed quote or a shell operator (`;`, `&`, `|`, `<`, `>`)
 */
export function splitShellWords(line: string): string[] {
  const words: string[] = [];
  let buf = '';
  let inWord = false;
  let single = false;
  let double = false;
  let escaped = false;
  for (const ch of line) {
    if (escaped) {
      buf += ch;
      escaped = false;
      inWord = true;
      continue;
    }
    if (ch === '\\' && !single) {
      escaped = true;
      inWord = true;
      continue;
    }
    if (single) {
      if (ch === "'") single = false;
      else buf += ch;
      continue;
    }
    if (double) {
      if (ch === '"') double = false;
      else buf += ch;
      continue;
    }
    if (ch === "'") {
      single = true;
      inWord = true;
      continue;
    }
    if (ch === '"') {
      double = true;
      inWord = true;
      continue;
    }
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r') {
      if (inWord) words.push(buf);
      buf = '';
      inWord = false;
      continue;
    }
    if (';&|<>'.includes(ch)) {
      throw new UsageError(`exec command contains the shell operator ${JSON.stringify(ch)}, but no shell is used: wrap it, e.g. sh -c '…'`);
    }
    buf += ch;
    inWord = true;
  }
  if (single || double || escaped) throw new UsageError(`invalid exec command line (unclosed quote or trailing backslash): ${line}`);
  if (inWord) words.push(buf);
  return words;
}
