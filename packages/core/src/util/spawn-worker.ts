import { Worker, type WorkerOptions } from 'node:worker_threads';

// In source mode (tests run .ts through tsx), a worker cannot load .ts on its own under
// Node 20: a small bootstrap registers tsx's loader in the worker first.
const BOOT = `
const { workerData } = require('node:worker_threads');
(async () => {
  if (workerData.tsx) (await import(workerData.tsx)).register();
  await import(workerData.url);
})().catch((err) => { setImmediate(() => { throw err; }); });
`;

/**
 * Starts the worker module `name` (e.g. `./decode-worker`) beside the module at `base`
 * (`import.meta.url` of the caller): its `.js` when running the build, its `.ts` through tsx
 * when running the sources.
 */
export function spawnWorker(name: string, base: string, opts: Omit<WorkerOptions, 'eval' | 'workerData'> = {}): Worker {
  if (base.endsWith('.ts')) {
    const url = new URL(`${name}.ts`, base).href;
    const tsx = import.meta.resolve('tsx/esm/api');
    return new Worker(BOOT, { ...opts, eval: true, workerData: { url, tsx } });
  }
  return new Worker(new URL(`${name}.js`, base), opts);
}
