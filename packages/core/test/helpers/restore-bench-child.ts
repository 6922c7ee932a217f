/**
 * Child process for the restore speed test, so each measurement has its own RSS:
 *   walship <replicaDir> <output> <verify>   — walship's restore
 *   litestream <replicaDir> <output> <gen> <snapshotIndex>   — decode with walship's decoder,
 *     write <db>-wal per index, PRAGMA wal_checkpoint(TRUNCATE) (Litestream v0.3's apply)
 * Prints one JSON line: { ms, walBytes, maxRssMB }.
 */
import fs from 'node:fs';
import { FileReplicaClient } from '@walship/file';
import { decodeObject } from '../../src/pipeline.js';
import { restore } from '../../src/restore/index.js';
import { litestreamWayRestore } from './litestream-way.js';

const [mode, replicaDir, output, a, b] = process.argv.slice(2);
const t0 = performance.now();
let walBytes = 0;
if (mode === 'walship') {
  const r = await restore({
    outputPath: output!,
    replicas: [{ name: 'file', client: new FileReplicaClient({ path: replicaDir! }) }],
    verify: a as 'integrity' | 'none',
  });
  walBytes = r.walBytes!;
} else {
  walBytes = await litestreamWayRestore({
    replicaDir: replicaDir!,
    generation: a!,
    snapshotIndex: Number(b),
    outputPath: output!,
    decode: (file) => decodeObject(fs.createReadStream(file)),
  });
}
const ms = performance.now() - t0;
process.stdout.write(`${JSON.stringify({ ms, walBytes, maxRssMB: peakRssMB() })}\n`);

/**
 * Peak RSS of this process. Linux keeps getrusage's ru_maxrss across execve (so a child of a
 * big test process would report the parent's size); VmHWM in /proc belongs to this image.
 */
function peakRssMB(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS / 1024;
}
