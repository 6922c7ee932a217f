/**
 * Child process for the permission test of file-replica-client.test.ts: run as an
 * unprivileged user (the test drops root with setpriv), because root ignores permission bits.
 *
 * Usage: node --conditions=walship-source --import tsx permission-child.ts <replica root>
 * Makes the snapshots directory of a generation unreadable (mode 000), checks that every
 * operation on it fails with a non-retryable BackendError whose cause is EACCES (never a
 * NotFoundError), restores the mode, and prints `permission-checks-passed <n>`. Any failed
 * check exits non-zero with the assertion message on stderr.
 */
import assert from 'node:assert/strict';
import { chmod } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { BackendError, NotFoundError } from '@walship/core';
import { FileReplicaClient } from '../../src/index.js';

const GEN = '0123456789abcdef';
const root = process.argv[2];
if (!root) throw new Error('usage: permission-child.ts <replica root>');

const body = (s: string) => Readable.from([Buffer.from(s)], { objectMode: false });
let checks = 0;
const isEacces = (err: unknown) => {
  assert.ok(err instanceof BackendError, `expected BackendError, got ${String(err)}`);
  assert.ok(!(err instanceof NotFoundError), 'not a NotFoundError');
  assert.equal(err.code, 'WALSHIP_BACKEND');
  assert.equal(err.retryable, false, 'permission errors are not retryable');
  assert.ok(!err.message.includes('\n'), 'one-line message');
  assert.equal((err.cause as { code?: string } | undefined)?.code, 'EACCES');
  checks++;
  return true;
};

const c = new FileReplicaClient({ path: root });
await c.writeSnapshot(GEN, 1, body('x'));
await chmod(c.snapshotsDir(GEN), 0o000);
try {
  await assert.rejects(c.snapshotReader(GEN, 1), isEacces);
  await assert.rejects(c.snapshots(GEN), isEacces);
  await assert.rejects(c.writeSnapshot(GEN, 2, body('y')), isEacces);
  await assert.rejects(c.deleteSnapshot(GEN, 1), isEacces);
} finally {
  await chmod(c.snapshotsDir(GEN), 0o700);
}
// Readable again: the object written before is intact.
const chunks: Buffer[] = [];
for await (const chunk of await c.snapshotReader(GEN, 1)) chunks.push(chunk as Buffer);
assert.equal(Buffer.concat(chunks).toString(), 'x');
process.stdout.write(`permission-checks-passed ${checks} uid=${process.getuid?.()}\n`);
