/**
 * Child process for the kill -9 tests: restores `<replicaDir>` into `<output>`.
 * With `<blockPhase>` (snapshot | wal | verify), it prints `phase <name>` when that phase
 * starts and then blocks its event loop, so the parent can kill it at a known moment.
 */
import { FileReplicaClient } from '@walship/file';
import { restore } from '../../src/restore/index.js';

const [replicaDir, output, blockPhase] = process.argv.slice(2);
let blocked = false;
await restore({
  outputPath: output!,
  replicas: [{ name: 'file', client: new FileReplicaClient({ path: replicaDir! }) }],
  parallelism: 2,
  onProgress: (p) => {
    if (blocked || p.phase !== blockPhase) return;
    if (p.phase === 'wal' && p.bytesDone < p.bytesTotal / 3) return;
    blocked = true;
    process.stdout.write(`phase ${p.phase}\n`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120_000);
  },
});
process.stdout.write('done\n');
