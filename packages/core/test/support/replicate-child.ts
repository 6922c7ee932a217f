// Runs a Replicator in its own process: `replicate-child.ts <db> <replicaDir> [minCheckpointPages] [leaseTtl]`.
// Prints "ready" once started and "synced <offset>" after each sync() so a parent can kill -9 it.
import { Replicator } from '@walship/core';
import { FileReplicaClient } from '@walship/file';

const [dbPath, replicaDir, minPages, leaseTtl] = process.argv.slice(2);
const rep = new Replicator(dbPath!, {
  monitorInterval: 20,
  minCheckpointPageCount: Number(minPages ?? 50),
  replicas: [{ client: new FileReplicaClient({ path: replicaDir! }), syncInterval: 20, ...(leaseTtl ? { leaseTtl } : {}) }],
});
await rep.start();
process.stdout.write('ready\n');
let stopping = false;
process.on('SIGTERM', () => {
  stopping = true;
  void rep.stop().then(() => process.exit(0));
});
for (;;) {
  let p;
  try {
    p = await rep.sync();
  } catch (err) {
    // stop() makes a pending sync() reject with ClosedError; the SIGTERM handler exits then.
    if (stopping) await new Promise(() => {});
    throw err;
  }
  process.stdout.write(`synced ${p.generation} ${p.index} ${p.offset}\n`);
  await new Promise((r) => setTimeout(r, 15));
}
