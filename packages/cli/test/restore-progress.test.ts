/**
 * `walship restore` progress (issue 14, item 5): `--json` prints progress and the result as JSON
 * lines on stdout; `--progress` off a terminal prints plain lines; the terminal line's text has
 * bytes, percent, segments, rate and ETA.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { Writable } from 'node:stream';
import { describeProgress, formatEta, TerminalProgress } from '../src/progress.js';
import { FILE_BACKEND, RESTORE, fileUrl, makeReplica, readIds, requires, runCli, tempDir } from './helpers.js';

test('progress text: bytes, percent, segments, rate, ETA', () => {
  assert.equal(
    describeProgress(
      { phase: 'wal', bytesDone: 3 * 1024 * 1024, bytesTotal: 12 * 1024 * 1024, segmentsDone: 7, segmentsTotal: 30 },
      1024 * 1024,
      9,
    ),
    'wal  3.0 MiB / 12.0 MiB  25%  7/30 segments  1.0 MiB/s  ETA 9s',
  );
  assert.equal(describeProgress({ phase: 'snapshot', bytesDone: 10, bytesTotal: 10 }, 0, 0), 'snapshot  10 B / 10 B  100%');
  assert.equal(formatEta(59.2), '1:00');
  assert.equal(formatEta(3725), '1:02:05');
});

test('on a terminal: one line updated in place with \\r, ended by a newline', () => {
  let text = '';
  const out = new Writable({
    write(c: Buffer, _e, cb) {
      text += c.toString();
      cb();
    },
  });
  const line = new TerminalProgress(out);
  line.update({ phase: 'wal', bytesDone: 0, bytesTotal: 100, segmentsDone: 0, segmentsTotal: 2 });
  line.update({ phase: 'wal', bytesDone: 100, bytesTotal: 100, segmentsDone: 2, segmentsTotal: 2 });
  line.finish();
  assert.match(text, /^\rwal {2}0 B \/ 100 B {2}0% {2}0\/2 segments *\rwal {2}100 B \/ 100 B {2}100% {2}2\/2 segments.*\n$/s);
});

test('restore --json: progress lines and a result line on stdout; --progress off a terminal: plain lines', async (t) => {
  const missing = await requires([FILE_BACKEND, RESTORE]);
  if (missing) return t.skip(missing);
  const { dir, cleanup } = tempDir('walship-cli-progress-');
  t.after(cleanup);
  const { replica, ids } = await makeReplica(dir, 200);
  const out = join(dir, 'restored.db');
  const r = await runCli(['restore', '--json', '-o', out, fileUrl(replica)]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readIds(out), ids);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const result = lines.at(-1)!;
  assert.equal(result['type'], 'result');
  assert.equal(result['status'], 'restored');
  assert.equal(typeof result['replica'], 'string');
  assert.match(String(result['restoredTo']), /^[0-9a-f]{16}\/[0-9a-f]{8}:\d+$/);
  const progress = lines.filter((l) => l['type'] === 'progress');
  const snap = progress.filter((l) => l['phase'] === 'snapshot').at(-1);
  assert.ok(snap && snap['bytesDone'] === snap['bytesTotal'] && Number(snap['bytesTotal']) > 0, JSON.stringify(progress));
  const wal = progress.filter((l) => l['phase'] === 'wal').at(-1);
  assert.ok(wal && wal['segmentsDone'] === wal['segmentsTotal'] && Number(wal['segmentsTotal']) >= 1, JSON.stringify(progress));
  assert.doesNotMatch(r.stderr, /\r/, 'no terminal line with --json');

  const out2 = join(dir, 'restored-2.db');
  const r2 = await runCli(['restore', '--progress', '-o', out2, fileUrl(replica)]);
  assert.equal(r2.code, 0, r2.stderr);
  assert.match(r2.stderr, /^restore progress: snapshot {2}\S+ \S+ \/ \S+ \S+ {2}100%/m);
  assert.match(r2.stderr, /^restore progress: wal .* (\d+)\/\1 segments/m);
  assert.doesNotMatch(r2.stderr, /\r/, 'plain lines off a terminal');
});
