/**
 * Replaces `$NAME` and `${NAME}` in `text` exactly like Go's `os.ExpandEnv` (which Litestream
 * applies to the whole config file): unset variables become empty strings, `$` followed by a
 * character that cannot start a name is kept, `${}` and an unclosed `${` are dropped, special
 * one-character names (`$1`, `$$`, `$?`, …) are looked up like any other name (and are
 * normally unset, so they vanish). There is no escape for a literal `$`.
 */
export function expandEnv(text: string, env: Readonly<Record<string, string | undefined>>): string {
  let out = '';
  let i = 0;
  for (let j = 0; j < text.length; j++) {
    if (text[j] !== '$' || j + 1 >= text.length) continue;
    out += text.slice(i, j);
    const [name, width] = shellName(text, j + 1);
    if (name === '' && width > 0) {
      // Invalid syntax: eat the characters.
    } else if (name === '') {
      out += '$';
    } else {
      out += env[name] ?? '';
    }
    j += width;
    i = j + 1;
  }
  return out + text.slice(i);
}

function isSpecial(c: string | undefined): boolean {
  return c !== undefined && '*#$@!?-0123456789'.includes(c);
}

function isAlphaNum(c: string | undefined): boolean {
  return c !== undefined && /^[A-Za-z0-9_]$/.test(c);
}

/** Go's getShellName: the name starting at `s[start]` and how many characters it uses. */
function shellName(s: string, start: number): [string, number] {
  if (s[start] === '{') {
    if (s.length - start > 2 && isSpecial(s[start + 1]) && s[start + 2] === '}') return [s[start + 1]!, 3];
    for (let k = start + 1; k < s.length; k++) {
      if (s[k] === '}') {
        if (k === start + 1) return ['', 2];
        return [s.slice(start + 1, k), k - start + 1];
      }
    }
    return ['', 1];
  }
  if (isSpecial(s[start])) return [s[start]!, 1];
  let k = start;
  while (k < s.length && isAlphaNum(s[k])) k++;
  return [s.slice(start, k), k - start];
}
