/**
 * A follower in its own process: `follow-child.ts <output> <replicaDir>`. Prints `following`
 * once started and `applied <index> <offset>` after each batch, so a parent can kill -9 it.
 */
import { Follower } from '@walship/core';
import { FileReplicaClient } from '@walship/file';

const [out, replicaDir] = process.argv.slice(2);
const follower = new Follower(out!, {
  replicas: [{ name: 'file', client: new FileReplicaClient({ path: replicaDir! }) }],
  intervalMs: 20,
  verify: 'none',
});
follower.on('applied', ({ pos }) => process.stdout.write(`applied ${pos.index} ${pos.offset}\n`));
await follower.start();
process.stdout.write('following\n');
process.on('SIGTERM', () => void follower.stop().then(() => process.exit(0)));
