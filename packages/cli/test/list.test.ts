import assert from 'node:assert/strict';
import { utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { FILE_BACKEND, LISTINGS, fileUrl, requires, runCli, tempDir, writeConfig } from './helpers.js';

const GEN_A = '0000000000000001';
const GEN_B = '00000000000000ff';
const GEN_C = 'abcdefabcdef0123';
const T0 = Date.parse('2024-01-02T03:04:05Z');
const T1 = Date.parse('2024-02-01T00:00:00Z');

interface Obj {
  gen: string;
  index: number;
  offset?: number;
  bytes: number;
  at: number;
}

/**
 * Writes replica objects with the real file backend (bodies are opaque to listings) and sets
 * their mtimes, which the file backend reports as creation times.
 */
async function writeReplica(root: string, objects: Obj[]): Promise<void> {
  const { fileBackend } = (await import('@walship/file')) as typeof import('@walship/file');
  const client = fileBackend.createClient({ path: root }, { env: process.env });
  for (const o of objects) {
    const body = Readable.from([Buffer.alloc(o.bytes, 7)]);
    const hex = (n: number) => n.toString(16).padStart(8, '0');
    let file: string;
    if (o.offset === undefined) {
      await client.writeSnapshot(o.gen, o.index, body);
      file = join(root, 'generations', o.gen, 'snapshots', `${hex(o.index)}.snapshot.lz4`);
    } else {
      await client.writeWALSegment({ generation: o.gen, index: o.index, offset: o.offset }, body);
      file = join(root, 'generations', o.gen, 'wal', `${hex(o.index)}_${hex(o.offset)}.wal.lz4`);
    }
    utimesSync(file, new Date(o.at), new Date(o.at));
  }
}

describe('listing commands', () => {
  const { dir, cleanup } = tempDir();
  after(cleanup);
  const one = join(dir, 'one');
  const two = join(dir, 'two');
  const db = join(dir, 'app.db');
  let cfg = '';
  let skip: string | false = false;

  before(async () => {
    skip = await requires([FILE_BACKEND, ...LISTINGS]);
    if (await requires([FILE_BACKEND])) return;
    await writeReplica(one, [
      { gen: GEN_A, index: 0, bytes: 3, at: T0 },
      { gen: GEN_A, index: 0, offset: 0, bytes: 5, at: T0 + 1000 },
      { gen: GEN_A, index: 0, offset: 0x1000, bytes: 2, at: T0 + 2000 },
      { gen: GEN_A, index: 1, offset: 0, bytes: 4, at: T0 + 3000 },
      { gen: GEN_A, index: 1, bytes: 6, at: T0 + 3000 },
      { gen: GEN_B, index: 0x10, bytes: 1234, at: T1 },
      { gen: GEN_B, index: 0x10, offset: 0, bytes: 77, at: T1 + 10_000 },
    ]);
    await writeReplica(two, [{ gen: GEN_C, index: 2, bytes: 9, at: T0 }]);
    // Lag is measured from the database's last write: 90 s after GEN_B's last object.
    writeFileSync(db, '');
    utimesSync(db, new Date(T1 + 100_000), new Date(T1 + 100_000));
    cfg = writeConfig(
      dir,
      `dbs:\n  - path: ${db}\n    replicas:\n      - name: one\n        path: ${one}\n      - name: two\n        path: ${two}\n`,
    );
  });

  test('generations: table with lag, start and end (config mode)', async (t) => {
    if (skip) return t.skip(skip);
    const r = await runCli(['generations', '-config', cfg, db]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.equal(lines.length, 5);
    assert.equal(lines[4], '');
    const cells = lines.slice(0, 4).map((l) => l.split(/ {2,}/));
    assert.deepEqual(cells[0], ['name', 'generation', 'lag', 'start', 'end']);
    assert.deepEqual(
      cells[1]!.filter((_, i) => i !== 2),
      ['one', GEN_A, '2024-01-02T03:04:05Z', '2024-01-02T03:04:08Z'],
    );
    assert.match(cells[1]![2]!, /^\d+h\d+m\d+s$/);
    assert.deepEqual(cells[2], ['one', GEN_B, '1m30s', '2024-02-01T00:00:00Z', '2024-02-01T00:00:10Z']);
    assert.deepEqual(
      cells[3]!.filter((_, i) => i !== 2),
      ['two', GEN_C, '2024-01-02T03:04:05Z', '2024-01-02T03:04:05Z'],
    );
    // Aligned columns: every cell starts where its header does; two spaces after the widest.
    const starts = (l: string) => [...l.matchAll(/(?:^| {2})(\S)/g)].map((m) => m.index! + (m[0].length - 1));
    for (const l of lines.slice(1, 4)) assert.deepEqual(starts(l), starts(lines[0]!));
    assert.equal(starts(lines[0]!)[3]! - starts(lines[0]!)[2]!, Math.max(...cells.map((c) => c[2]!.length)) + 2);
  });

  test('generations --json and -replica', async (t) => {
    if (skip) return t.skip(skip);
    for (const args of [['-replica', 'one'], ['--replica=one']]) {
      const r = await runCli(['generations', '--json', '-config', cfg, ...args, db]);
      assert.equal(r.code, 0, r.stderr);
      const rows = JSON.parse(r.stdout);
      assert.equal(rows.length, 2);
      assert.deepEqual(rows[1], {
        replica: 'one',
        generation: GEN_B,
        lag: '1m30s',
        lagMs: 90_000,
        start: '2024-02-01T00:00:00Z',
        end: '2024-02-01T00:00:10Z',
      });
    }
  });

  test('unknown -replica', async (t) => {
    if (skip) return t.skip(skip);
    const r = await runCli(['snapshots', '-config', cfg, '-replica', 'three', db]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `walship: replica "three" not found for database "${db}"\n`);
  });

  test('snapshots: index in decimal as Litestream prints it, size in bytes, sorted', async (t) => {
    if (skip) return t.skip(skip);
    const r = await runCli(['snapshots', '-config', cfg, db]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'replica  generation        index  size  created',
        'one      0000000000000001  0      3     2024-01-02T03:04:05Z',
        'one      0000000000000001  1      6     2024-01-02T03:04:08Z',
        'one      00000000000000ff  16     1234  2024-02-01T00:00:00Z',
        'two      abcdefabcdef0123  2      9     2024-01-02T03:04:05Z',
        '',
      ].join('\n'),
    );
  });

  test('snapshots --json from a replica URL', async (t) => {
    if (skip) return t.skip(skip);
    const r = await runCli(['snapshots', '--json', fileUrl(two)]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [
      { replica: 'file', generation: GEN_C, index: '00000002', size: 9, created: '2024-01-02T03:04:05Z' },
    ]);
  });

  test('wal: index and offset in decimal as Litestream prints them (hex in --json); -generation filter', async (t) => {
    if (skip) return t.skip(skip);
    let r = await runCli(['wal', '-config', cfg, '-replica', 'one', db]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'replica  generation        index  offset  size  created',
        'one      0000000000000001  0      0       5     2024-01-02T03:04:06Z',
        'one      0000000000000001  0      4096    2     2024-01-02T03:04:07Z',
        'one      0000000000000001  1      0       4     2024-01-02T03:04:08Z',
        'one      00000000000000ff  16     0       77    2024-02-01T00:00:10Z',
        '',
      ].join('\n'),
    );
    for (const args of [['-generation', GEN_B], [`--generation=${GEN_B}`]]) {
      r = await runCli(['wal', '--json', ...args, fileUrl(one)]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), [
        { replica: 'file', generation: GEN_B, index: '00000010', offset: '00000000', size: 77, created: '2024-02-01T00:00:10Z' },
      ]);
    }
  });

  test('generations of a URL: lag measured from now', async (t) => {
    if (skip) return t.skip(skip);
    const r = await runCli(['generations', '--json', fileUrl(two)]);
    assert.equal(r.code, 0, r.stderr);
    const [row] = JSON.parse(r.stdout);
    assert.equal(row.replica, 'file');
    assert.ok(row.lagMs > Date.now() - T0 - 600_000);
    assert.match(row.lag, /^\d+h\d+m\d+s$/);
  });

  test('an empty replica lists a header only / an empty JSON array', async (t) => {
    if (skip) return t.skip(skip);
    let r = await runCli(['snapshots', fileUrl(join(dir, 'empty'))]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'replica  generation  index  size  created\n');
    r = await runCli(['wal', '--json', fileUrl(join(dir, 'empty'))]);
    assert.deepEqual(JSON.parse(r.stdout), []);
  });

  test('a failing replica is logged on stderr and skipped; all failing is an error', async (t) => {
    if (skip) return t.skip(skip);
    const notDir = join(dir, 'not-a-dir');
    writeFileSync(notDir, 'x');
    const cfg2 = writeConfig(
      dir,
      `dbs:\n  - path: ${db}\n    replicas:\n      - name: broken\n        path: ${notDir}/sub\n      - name: two\n        path: ${two}\n`,
      'broken.yml',
    );
    let r = await runCli(['snapshots', '--json', '-config', cfg2, db]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).length, 1);
    assert.match(r.stderr, /level=ERROR msg="cannot list snapshots" replica=broken/);
    r = await runCli(['snapshots', '-config', cfg2, '-replica', 'broken', db]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /walship: cannot list snapshots: /);
  });
});
