// Loaded into every test process (`node --import ../../scripts/test-reaper.mjs --test ...`).
// A test that fails half-way must not leave its children running: a writer child looping
// forever keeps the test file's process alive (the suite then hangs until CI's time limit) and
// eats the CPU every later test needs. Every child started through node:child_process is
// remembered until it exits; when the test process exits (tests run with --test-force-exit)
// the ones still running are killed with SIGKILL — their whole process group when detached.
import { createRequire, syncBuiltinESMExports } from 'node:module';

const cp = createRequire(import.meta.url)('node:child_process');
const alive = new Set();

function track(child, detached) {
  if (!child || typeof child.pid !== 'number') return child;
  const entry = { child, detached };
  alive.add(entry);
  child.once('exit', () => alive.delete(entry));
  return child;
}

function optionsOf(args) {
  return args.find((a, i) => i > 0 && a !== null && typeof a === 'object' && !Array.isArray(a)) ?? {};
}

for (const name of ['spawn', 'fork', 'execFile', 'exec']) {
  const original = cp[name];
  cp[name] = function (...args) {
    return track(original.apply(this, args), optionsOf(args).detached === true);
  };
}
syncBuiltinESMExports();

process.on('exit', () => {
  for (const { child, detached } of alive) {
    try {
      if (detached) process.kill(-child.pid, 'SIGKILL');
      else child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});
