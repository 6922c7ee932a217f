import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Spawns a TypeScript support script in a child process (source-resolved like the tests). */
export function spawnScript(
  name: string,
  args: string[],
  env?: Record<string, string>,
): ChildProcess & { lines: string[]; waitFor(re: RegExp, ms?: number): Promise<string> } {
  const child = spawn(process.execPath, ['--conditions=walship-source', '--import', 'tsx', path.join(here, name), ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    ...(env ? { env: { ...process.env, ...env } } : {}),
  }) as ChildProcess & { lines: string[]; waitFor(re: RegExp, ms?: number): Promise<string> };
  child.lines = [];
  let buf = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      child.lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    for (const w of waiters.splice(0)) w();
  });
  child.waitFor = (re, ms = 20_000) =>
    new Promise((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error(`timed out waiting for ${re} from ${name}`)), ms);
      const check = () => {
        const hit = child.lines.find((l) => re.test(l));
        if (hit) {
          clearTimeout(deadline);
          resolve(hit);
        } else if (child.exitCode !== null) {
          clearTimeout(deadline);
          reject(new Error(`${name} exited with ${child.exitCode} before ${re}`));
        } else waiters.push(check);
      };
      child.once('exit', () => waiters.push(check) && check());
      check();
    });
  return child;
}

export function exited(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null ? Promise.resolve(child.exitCode) : new Promise((r) => child.once('exit', (c) => r(c)));
}
