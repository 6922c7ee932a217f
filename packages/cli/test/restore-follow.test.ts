/**
 * `walship restore -f` (issue 18): restores, keeps the output current from the replica while a
 * reader queries it, stops on SIGTERM with exit 0 and a consistent database; flags that make no
 * sense with following are one-line usage errors.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { FILE_BACKEND, RESTORE, fileUrl, openWriter, requires, runCli, sleep, spawnCli, tempDir } from './helpers.js';

test('restore -f follows a live replica: a reader sees new rows, SIGTERM stops it cleanly', async (t) => {
  const missing = await requires([FILE_BACKEND, RESTORE]);
  if (missing) return t.skip(missing);
  const { dir, cleanup } = tempDir('walship-cli-follow-');
  t.after(cleanup);
  const db = join(dir, 'app.db');
  const replica = join(dir, 'replica');
  const out = join(dir, 'standby.db');
  const w = openWriter(db);
  for (let i = 0; i < 20; i++) w.insert();
  const primary = spawnCli(['replicate', db, fileUrl(replica)]);
  t.after(() => primary.kill('SIGKILL'));
  await primary.waitFor(/msg="replicating to"/);
  await primary.waitFor(/wal segment written/, 20_000).catch(() => undefined);
  const follower = spawnCli(['restore', '-f', '-follow-interval', '100ms', '--json', '-o', out, fileUrl(replica)]);
  t.after(() => follower.kill('SIGKILL'));
  await follower.waitFor(/"type":"restored"/, 30_000);
  const reader = new Database(out, { readonly: true, fileMustExist: true, timeout: 5000 });
  const count = () => (reader.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n;
  assert.ok(count() >= 1);
  for (let i = 0; i < 200; i++) w.insert();
  const deadline = Date.now() + 20_000;
  while (count() !== w.count()) {
    assert.ok(Date.now() < deadline, `the follower has ${count()} rows, the primary ${w.count()}`);
    await sleep(50);
  }
  reader.close();
  follower.kill('SIGTERM');
  const r = await follower.exited;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /msg="follow stopped"/);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; position?: string; commits?: number });
  assert.equal(lines.filter((l) => l.type === 'restored').length, 1);
  assert.ok(
    lines.some((l) => l.type === 'applied' && (l.commits ?? 0) >= 1),
    'applied events',
  );
  for (const l of lines) if (l.position !== undefined) assert.match(l.position, /^[0-9a-f]{16}\/[0-9a-f]{8}:\d+$/);
  const check = new Database(out, { readonly: true });
  assert.equal(check.pragma('integrity_check', { simple: true }), 'ok');
  assert.equal((check.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n, w.count());
  check.close();
  w.close();
  primary.kill('SIGTERM');
  assert.equal((await primary.exited).code, 0);
});

test('restore -f: flags that cannot go with following are one-line usage errors', async (t) => {
  const missing = await requires([FILE_BACKEND, RESTORE]);
  if (missing) return t.skip(missing);
  const { dir, cleanup } = tempDir('walship-cli-follow-');
  t.after(cleanup);
  const url = fileUrl(join(dir, 'replica'));
  const out = join(dir, 'o.db');
  for (const [args, message] of [
    [
      ['-f', '-timestamp', '2000-01-01T00:00:00Z'],
      'cannot combine -f (follow) with -timestamp: a follower restores the latest state and keeps it current',
    ],
    [['-f', '-index', '1'], 'cannot combine -f (follow) with -index: a follower restores the latest state and keeps it current'],
    [
      ['-f', '-if-db-not-exists'],
      'cannot combine -f (follow) with -if-db-not-exists: a follower restores the latest state and keeps it current',
    ],
    [
      ['-f', '-generation', '0123456789abcdef'],
      'cannot combine -f (follow) with -generation: a follower restores the latest state and keeps it current',
    ],
    [['-follow-interval', '1s'], '-follow-interval needs -f (follow)'],
    [['-f', '-follow-interval', 'soon'], 'invalid value "soon" for -follow-interval: use a duration such as 1s or 500ms'],
  ] as const) {
    const r = await runCli(['restore', ...args, '-o', out, url]);
    assert.notEqual(r.code, 0);
    assert.equal(r.stdout, '');
    assert.ok(r.stderr.includes(message), `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length <= 2, true, r.stderr);
  }
});
