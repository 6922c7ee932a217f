// Issue #13 §5: an app embedding walship with an S3 replica is killed with -9 at random moments
// and restarted, round after round; after every kill the replica restores with every
// transaction that sync() acknowledged, ids contiguous, and the generation never changes.
// The rounds run in core's test harness (core/test/support/kill-rounds.ts) in a child process.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createBucket, destroyBucket, rawClient, startS3rver, uniqueBucketName, unavailableMode } from './helpers/servers.js';

const here = dirname(fileURLToPath(import.meta.url));
const runner = resolve(here, '..', '..', 'core', 'test', 'support', 'kill-rounds-main.ts');
const ROUNDS = Number(process.env['WALSHIP_KILL_ROUNDS'] ?? 8);

const started = await startS3rver();
const title = `s3rver: an embedding app killed with -9 ${ROUNDS} times loses no acknowledged transaction and keeps one generation`;
if (!started.server) {
  const m = unavailableMode(started.unavailable);
  if ('skip' in m) test(title, { skip: m.skip }, () => {});
  else test(title, () => assert.fail(m.fail));
} else {
  const server = started.server;
  after(() => server.stop());
  test(title, { timeout: 400_000 }, async (t) => {
    const raw = rawClient(server);
    const bucket = uniqueBucketName('kill');
    await createBucket(raw, bucket);
    const dir = await mkdtemp(join(tmpdir(), 'walship-s3-kill-'));
    try {
      const env = {
        ...process.env,
        WALSHIP_TEST_S3_ENDPOINT: server.endpoint,
        WALSHIP_TEST_S3_BUCKET: bucket,
        WALSHIP_TEST_S3_PATH: 'app.db',
        WALSHIP_TEST_S3_KEY: server.accessKeyId,
        WALSHIP_TEST_S3_SECRET: server.secretAccessKey,
      };
      const child = spawn(
        process.execPath,
        [
          '--conditions=walship-source',
          '--import',
          'tsx',
          runner,
          join(dir, 'app.db'),
          join(here, 'support', 's3-client-module.ts'),
          dir,
          String(ROUNDS),
        ],
        { env, stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number | null>((r) => child.once('exit', r));
      const line = out.trim().split('\n').at(-1) ?? '';
      const r = JSON.parse(line) as {
        ok: boolean;
        error?: string;
        rounds: number;
        maxAcked: number;
        restoredMax: number;
        generationEvents: string[];
      };
      assert.ok(r.ok, r.error);
      assert.equal(code, 0);
      t.diagnostic(
        `rounds ${r.rounds}, acknowledged up to id ${r.maxAcked}, restored ${r.restoredMax} rows, generation events: ${r.generationEvents.join(' | ')}`,
      );
      assert.ok(r.maxAcked > 0, 'the app acknowledged transactions');
      assert.equal(r.generationEvents.length, 1, `only the first start begins a generation: ${r.generationEvents.join(' | ')}`);
    } finally {
      await destroyBucket(raw, bucket).catch(() => {});
      raw.destroy();
      await rm(dir, { recursive: true, force: true });
    }
  });
}
