import assert from 'node:assert/strict';
import { chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BackendError, ConfigError, InvalidArgumentError, NotFoundError } from '@walship/core';
import { FileReplicaClient } from '../src/index.js';

const GEN = '0123456789abcdef';
const base = await mkdtemp(path.join(os.tmpdir(), 'walship-file-'));
after(() => rm(base, { recursive: true, force: true }));
let roots = 0;
/** `nobody` / `nogroup` on Debian (the unprivileged user the permission test runs as under root). */
const NOBODY_UID = 65534;
const NOGROUP_GID = 65534;
function freshClient(): FileReplicaClient {
  return new FileReplicaClient({ path: path.join(base, `r${++roots}`) });
}

function bodyOf(data: string | Buffer): Readable {
  return Readable.from([Buffer.from(data)], { objectMode: false });
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function waitFor(cond: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function isBackendError(code?: string) {
  return (err: unknown) => {
    assert.ok(err instanceof BackendError, `expected BackendError, got ${String(err)}`);
    assert.ok(!(err instanceof NotFoundError));
    assert.equal(err.code, 'WALSHIP_BACKEND');
    assert.ok(!err.message.includes('\n'), 'one-line message');
    if (code) assert.equal((err.cause as { code?: string } | undefined)?.code, code);
    return true;
  };
}

describe('paths', { skip: process.platform === 'win32' ? 'POSIX paths' : false }, () => {
  test("type and path helpers equal Litestream's", () => {
    const c = new FileReplicaClient({ path: '/foo' });
    assert.equal(c.type, 'file');
    assert.equal(c.path, '/foo');
    assert.equal(c.generationsDir(), '/foo/generations');
    assert.equal(c.generationDir(GEN), `/foo/generations/${GEN}`);
    assert.equal(c.snapshotsDir(GEN), `/foo/generations/${GEN}/snapshots`);
    assert.equal(c.snapshotPath(GEN, 1000), `/foo/generations/${GEN}/snapshots/000003e8.snapshot.lz4`);
    assert.equal(c.walDir(GEN), `/foo/generations/${GEN}/wal`);
    assert.equal(c.walSegmentPath(GEN, 1000, 1001), `/foo/generations/${GEN}/wal/000003e8_000003e9.wal.lz4`);
    assert.equal(c.walSegmentPath(GEN, 1, 0x1_0000_0020), `/foo/generations/${GEN}/wal/00000001_100000020.wal.lz4`);
  });

  test('path helpers reject an empty generation', () => {
    const c = new FileReplicaClient({ path: '/foo' });
    for (const fn of [
      () => c.generationDir(''),
      () => c.snapshotsDir(''),
      () => c.snapshotPath('', 1000),
      () => c.walDir(''),
      () => c.walSegmentPath('', 1000, 1001),
    ]) {
      assert.throws(fn, (err: unknown) => err instanceof InvalidArgumentError && /generation required$/.test(err.message));
    }
  });

  test('constructor: empty path is a ConfigError', () => {
    assert.throws(
      () => new FileReplicaClient({ path: '' }),
      (err: unknown) => err instanceof ConfigError && err.code === 'WALSHIP_CONFIG' && err.message === 'file replica path required',
    );
  });

  test('constructor: ~ expanded, relative made absolute, trailing slash dropped', () => {
    assert.equal(new FileReplicaClient({ path: '~' }).path, os.homedir());
    assert.equal(new FileReplicaClient({ path: '~/backups/db' }).path, path.join(os.homedir(), 'backups/db'));
    assert.equal(new FileReplicaClient({ path: 'rel/dir' }).path, path.resolve(process.cwd(), 'rel/dir'));
    assert.equal(new FileReplicaClient({ path: '/foo/bar/' }).path, '/foo/bar');
    assert.equal(new FileReplicaClient({ path: '~user/x' }).path, path.resolve('~user/x'), 'only ~ and ~/ are expanded');
  });
});

describe('atomic writes', () => {
  test('temporary files are never visible to listings or readers', async () => {
    const c = freshClient();
    const pos = { generation: GEN, index: 1, offset: 0 };
    for (const kind of ['snapshot', 'segment'] as const) {
      const body = new PassThrough();
      const dir = kind === 'snapshot' ? c.snapshotsDir(GEN) : c.walDir(GEN);
      const writing = kind === 'snapshot' ? c.writeSnapshot(GEN, 1, body) : c.writeWALSegment(pos, body);
      body.write(Buffer.alloc(4096, 1));
      await waitFor(async () => (await readdir(dir).catch(() => [] as string[])).some((n) => n.includes('.tmp-')), 'the temporary file');
      assert.deepEqual(await c.snapshots(GEN), []);
      assert.deepEqual(await c.walSegments(GEN), []);
      await assert.rejects(c.snapshotReader(GEN, 1), NotFoundError);
      await assert.rejects(c.walSegmentReader(pos), NotFoundError);
      body.end(Buffer.alloc(10, 2));
      const info = await writing;
      assert.equal(info.size, 4106);
      assert.deepEqual(await readdir(dir), [kind === 'snapshot' ? '00000001.snapshot.lz4' : '00000001_00000000.wal.lz4']);
      if (kind === 'snapshot') await c.deleteSnapshot(GEN, 1);
      else await c.deleteWALSegments([pos]);
    }
  });

  test('a failure mid-write leaves neither a final nor a temporary file', async () => {
    const c = freshClient();
    const body = new PassThrough();
    const writing = c.writeSnapshot(GEN, 7, body);
    body.write(Buffer.alloc(64 * 1024, 1));
    await waitFor(async () => (await readdir(c.snapshotsDir(GEN)).catch(() => [] as string[])).length > 0, 'the temporary file');
    const failure = new Error('source vanished');
    body.destroy(failure);
    await assert.rejects(writing, (err) => err === failure);
    assert.deepEqual(await readdir(c.snapshotsDir(GEN)), []);
    await assert.rejects(c.snapshotReader(GEN, 7), NotFoundError);
  });

  test('leftovers of a crashed writer are ignored', async () => {
    const c = freshClient();
    await mkdir(c.snapshotsDir(GEN), { recursive: true });
    await mkdir(c.walDir(GEN), { recursive: true });
    await writeFile(`${c.snapshotPath(GEN, 1000)}.tmp-0123456789ab`, 'partial');
    await writeFile(`${c.snapshotPath(GEN, 1000)}.tmp`, 'partial (Litestream)');
    await writeFile(`${c.walSegmentPath(GEN, 1000, 0)}.tmp-0123456789ab`, 'partial');
    assert.deepEqual(await c.snapshots(GEN), []);
    assert.deepEqual(await c.walSegments(GEN), []);
    assert.deepEqual(await c.generations(), [GEN]);
  });

  test('concurrent writes of one name leave one whole object', async () => {
    const c = freshClient();
    const bodies = Array.from({ length: 16 }, (_, i) => Buffer.alloc(32 * 1024 + i, i + 1));
    await Promise.all(bodies.map((b) => c.writeSnapshot(GEN, 3, bodyOf(b))));
    const got = await readAll(await c.snapshotReader(GEN, 3));
    assert.ok(
      bodies.some((b) => b.equals(got)),
      'the stored object is one of the bodies, whole',
    );
    assert.deepEqual(await readdir(c.snapshotsDir(GEN)), ['00000003.snapshot.lz4']);
  });

  test('size is bytes on disk, createdAt is mtime, modes are private', async () => {
    const c = freshClient();
    const info = await c.writeSnapshot(GEN, 2, bodyOf('twelve bytes'));
    const st = await stat(c.snapshotPath(GEN, 2));
    assert.equal(info.size, st.size);
    assert.equal(info.createdAt.getTime(), st.mtime.getTime());
    const [listed] = await c.snapshots(GEN);
    assert.equal(listed?.size, 12);
    assert.equal(listed?.createdAt.getTime(), st.mtime.getTime());
    if (process.platform !== 'win32') {
      assert.equal(st.mode & 0o077, 0, 'snapshot file is not readable by group/others');
      assert.equal((await stat(c.snapshotsDir(GEN))).mode & 0o077, 0, 'created directories are private');
    }
    assert.equal((await readFile(c.snapshotPath(GEN, 2))).toString(), 'twelve bytes');
  });
});

describe('errors other than not-found', () => {
  test('a file where a directory should be is a BackendError, not NotFoundError', async () => {
    const c = freshClient();
    await mkdir(c.generationDir(GEN), { recursive: true });
    await writeFile(c.snapshotsDir(GEN), 'not a directory');
    await assert.rejects(c.snapshots(GEN), isBackendError('ENOTDIR'));
    await assert.rejects(c.snapshotReader(GEN, 1), isBackendError('ENOTDIR'));
    await assert.rejects(c.writeSnapshot(GEN, 1, bodyOf('x')), isBackendError());
    await assert.rejects(c.deleteSnapshot(GEN, 1), isBackendError('ENOTDIR'));
  });

  test('a root that is a file is a BackendError', async () => {
    const root = path.join(base, `file-root-${++roots}`);
    await writeFile(root, 'not a directory');
    const c = new FileReplicaClient({ path: root });
    await assert.rejects(c.generations(), isBackendError('ENOTDIR'));
  });

  test('a directory where an object should be is a BackendError, and the temp file is removed', async () => {
    const c = freshClient();
    await mkdir(c.snapshotPath(GEN, 1), { recursive: true });
    await assert.rejects(c.snapshotReader(GEN, 1), isBackendError());
    await assert.rejects(c.writeSnapshot(GEN, 1, bodyOf('x')), isBackendError());
    assert.deepEqual(await readdir(c.snapshotsDir(GEN)), ['00000001.snapshot.lz4']);
    assert.deepEqual(await c.snapshots(GEN), [], 'a directory is not a snapshot');
  });

  // Root ignores permission bits (and CI runs as root), so the checks run in a child process
  // as an unprivileged user: `nobody` via setpriv when we are root, else the current user.
  test('permission errors surface as BackendError, not NotFoundError (as an unprivileged user)', {
    skip: process.platform === 'win32' ? 'POSIX permission bits' : false,
  }, async () => {
    const asRoot = process.getuid?.() === 0;
    const dir = await mkdtemp(path.join(os.tmpdir(), 'walship-file-perm-'));
    try {
      const root = path.join(dir, 'replica');
      if (asRoot) await chown(dir, NOBODY_UID, NOGROUP_GID);
      const child = fileURLToPath(new URL('./support/permission-child.ts', import.meta.url));
      const node = [process.execPath, '--conditions=walship-source', '--import', import.meta.resolve('tsx'), child, root];
      const argv = asRoot ? ['setpriv', `--reuid=${NOBODY_UID}`, `--regid=${NOGROUP_GID}`, '--clear-groups', '--', ...node] : node;
      const r = spawnSync(argv[0]!, argv.slice(1), {
        cwd: dir,
        encoding: 'utf8',
        timeout: 120_000,
        env: { ...process.env, HOME: dir, NODE_OPTIONS: undefined, NODE_TEST_CONTEXT: undefined },
      });
      assert.equal(r.error, undefined, `cannot run ${argv[0]}: ${String(r.error)}`);
      assert.equal(r.status, 0, `permission checks failed in the child:\n${r.stdout}\n${r.stderr}`);
      const expectedUid = asRoot ? NOBODY_UID : process.getuid!();
      assert.equal(r.stdout.trim(), `permission-checks-passed 4 uid=${expectedUid}`, r.stderr);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
