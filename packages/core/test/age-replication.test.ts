// Issue #15: age-encrypted replicas end to end on a file replica — replicate, restart, several
// generations, point-in-time restore, the error codes at start-up and restore, `age -d` of every
// object — and interop both ways with the real Litestream v0.3.13.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import {
  AgeError,
  ageIdentityToRecipient,
  ageStage,
  generateAgeIdentity,
  lz4Stage,
  type ObjectStage,
  type ReplicaClient,
  Replicator,
  restore,
} from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import type Database from 'better-sqlite3';
import { insertRows, openApp, tempDir, until } from './support/db.js';
import { litestreamBin, replicateWithLitestream, restoreWithLitestream } from './support/litestream.js';
import { rows } from './support/replica-check.js';

const haveTools = spawnSync('age', ['--version']).status === 0 && spawnSync('lz4', ['--version']).status === 0;

function needTools(t: TestContext): boolean {
  if (haveTools) return true;
  if (process.env['CI'] === 'true') assert.fail('the age and lz4 commands are required under CI=true (apt-get install age lz4)');
  t.skip('age or lz4 not found: apt-get install age lz4');
  return false;
}

const LITESTREAM_HEAD = Buffer.from([0x04, 0x22, 0x4d, 0x18]);

/** Every object of the replica decrypts with `age -d` to an LZ4 frame that `lz4 -t` accepts. */
function checkObjectsWithAgeCli(replicaDir: string, keyFile: string): number {
  let n = 0;
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(snapshot|wal)\.lz4$/.test(e.name)) {
        const head = Buffer.alloc(22);
        const fd = fs.openSync(p, 'r');
        fs.readSync(fd, head, 0, 22, 0);
        fs.closeSync(fd);
        assert.equal(head.toString('latin1'), 'age-encryption.org/v1\n', `${p} is a binary age file`);
        const frame = execFileSync('age', ['-d', '-i', keyFile, p], { maxBuffer: 1 << 28 });
        assert.ok(frame.subarray(0, 4).equals(LITESTREAM_HEAD), `${p} decrypts to an LZ4 frame`);
        const r = spawnSync('lz4', ['-t'], { input: frame });
        assert.equal(r.status, 0, `lz4 -t ${p}: ${r.stderr}`);
        n++;
      }
    }
  };
  walk(path.join(replicaDir, 'generations'));
  return n;
}

function appRows(app: Database.Database): unknown[] {
  return app.prepare('SELECT * FROM t ORDER BY id').all();
}

async function restored(
  client: ReplicaClient,
  stages: readonly ObjectStage[] | undefined,
  out: string,
  extra: Record<string, unknown> = {},
): Promise<unknown[]> {
  await restore({ outputPath: out, replicas: [{ name: 'r', client, ...(stages ? { stages } : {}) }], verify: 'quick', ...extra });
  return rows(out);
}

async function failsWith(p: Promise<unknown>, code: string): Promise<AgeError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof AgeError, String(err));
    assert.equal(err.code, code, err.message);
    assert.ok(!err.message.includes('\n'));
    return err;
  }
  assert.fail(`expected ${code}`);
}

describe('age-encrypted file replica', () => {
  test('replicate, restart, new generation, point in time; every object is age(LZ4); errors', async (t) => {
    const dir = await tempDir('walship-age-e2e-');
    const dbPath = path.join(dir, 'app.db');
    const replicaDir = path.join(dir, 'replica');
    const plainDir = path.join(dir, 'plain');
    const client = new FileReplicaClient({ path: replicaDir });
    const plain = new FileReplicaClient({ path: plainDir });
    const id = generateAgeIdentity();
    const keyFile = path.join(dir, 'key.txt');
    fs.writeFileSync(keyFile, `# test identity\n${id}\n`);
    const writeOnly = [lz4Stage, ageStage({ recipients: [ageIdentityToRecipient(id)] })];
    const readWrite = [lz4Stage, ageStage({ identities: [fs.readFileSync(keyFile, 'utf8')] })];
    const app = openApp(dbPath);
    t.after(() => app.close());
    const replicator = (stages: readonly ObjectStage[], withPlain = false) =>
      new Replicator(dbPath, {
        monitorInterval: 25,
        replicas: [
          { name: 'enc', client, syncInterval: 25, stages },
          ...(withPlain ? [{ name: 'plain', client: plain, syncInterval: 25 }] : []),
        ],
      });

    // 1. Recipients only: a new generation needs nothing read back.
    const r1 = replicator(writeOnly);
    await r1.start();
    insertRows(app, 50);
    await r1.sync({ timeout: 10_000 });
    const gen1 = r1.status().generation!;
    const at50 = appRows(app);
    await new Promise((r) => setTimeout(r, 1100)); // whole seconds apart, for the point in time
    const t50 = new Date(Date.now() - 500);
    insertRows(app, 50);
    await r1.sync({ timeout: 10_000 });
    const at100 = appRows(app);
    await r1.stop();

    // 2. Restart with recipients only: continuing the generation needs its position, which
    //    needs an identity. One-line error saying what to add; nothing written meanwhile.
    const r2 = replicator(writeOnly);
    const errors: Error[] = [];
    r2.on('replica-error', (e) => errors.push(e.error));
    await r2.start();
    insertRows(app, 5);
    await until(() => errors.length > 0, 10_000, 'the position error');
    const before = fs.readdirSync(path.join(replicaDir, 'generations', gen1, 'wal')).length;
    await r2.stop({ timeout: 1000 }).catch(() => {});
    const e = errors[0] as AgeError;
    assert.equal(e.code, 'WALSHIP_AGE_NO_IDENTITY');
    assert.match(
      e.message,
      /^cannot read the replica's position from its last wal segment [0-9a-f]{16}\/[0-9a-f]{8}:\d+: object is age-encrypted but no age identity is configured to read it: add the identity \(AGE-SECRET-KEY-1…\) of one of its recipients to age\.identities$/,
    );
    assert.equal(fs.readdirSync(path.join(replicaDir, 'generations', gen1, 'wal')).length, before);

    // 3. A new generation (walship's state gone), with identities (recipients default to theirs),
    //    beside a plain replica.
    fs.rmSync(path.join(dir, '.app.db-walship'), { recursive: true, force: true });
    const r3 = replicator(readWrite, true);
    await r3.start();
    insertRows(app, 30);
    await r3.sync({ timeout: 10_000 });
    const gen2 = r3.status().generation!;
    assert.notEqual(gen2, gen1);
    await r3.stop();
    const all = appRows(app);
    assert.equal(all.length, 135);

    // Restores: latest, by generation, by time.
    assert.deepEqual(await restored(client, readWrite, path.join(dir, 'latest.db')), all);
    assert.deepEqual(await restored(client, readWrite, path.join(dir, 'gen1.db'), { generation: gen1 }), at100);
    assert.deepEqual(await restored(client, readWrite, path.join(dir, 'pit.db'), { generation: gen1, timestamp: t50 }), at50);
    assert.deepEqual(await restored(plain, undefined, path.join(dir, 'plain.db')), all);

    // Errors, nothing written.
    const none = path.join(dir, 'none.db');
    await failsWith(restored(client, undefined, none), 'WALSHIP_AGE_NO_IDENTITY');
    await failsWith(restored(client, writeOnly, none), 'WALSHIP_AGE_NO_IDENTITY');
    const nomatch = await failsWith(
      restored(client, [lz4Stage, ageStage({ identities: [generateAgeIdentity()] })], none),
      'WALSHIP_AGE_NO_MATCH',
    );
    assert.match(nomatch.message, /^no identity matched/);
    await failsWith(restored(plain, readWrite, none), 'WALSHIP_AGE_NOT_ENCRYPTED');
    assert.deepEqual(
      fs.readdirSync(dir).filter((n) => n.startsWith('none')),
      [],
    );

    if (!needTools(t)) return;
    assert.ok(checkObjectsWithAgeCli(replicaDir, keyFile) >= 4);
  });
});

describe('age interop with Litestream v0.3.13', () => {
  function config(dbPath: string, replicaDir: string, age: { identities?: string[]; recipients?: string[] }): string {
    const list = (k: string, v: string[] | undefined) => (v ? `          ${k}:\n${v.map((s) => `            - ${s}\n`).join('')}` : '');
    return `dbs:\n  - path: ${dbPath}\n    replicas:\n      - type: file\n        path: ${replicaDir}\n        sync-interval: 100ms\n        age:\n${list('identities', age.identities)}${list('recipients', age.recipients)}`;
  }

  test('Litestream writes an encrypted replica; walship restores it and continues its generation', async (t) => {
    const bin = litestreamBin(t);
    if (!bin) return;
    const dir = await tempDir('walship-age-from-litestream-');
    const dbPath = path.join(dir, 'app.db');
    const replicaDir = path.join(dir, 'replica');
    const client = new FileReplicaClient({ path: replicaDir });
    const id = generateAgeIdentity();
    const other = generateAgeIdentity();
    const stages = [lz4Stage, ageStage({ identities: [id] })];
    const app = openApp(dbPath);
    t.after(() => app.close());
    insertRows(app, 100);
    const cfg = path.join(dir, 'litestream.yml');
    fs.writeFileSync(
      cfg,
      config(dbPath, replicaDir, { identities: [id], recipients: [ageIdentityToRecipient(id), ageIdentityToRecipient(other)] }),
    );
    const ls = replicateWithLitestream(bin, cfg);
    let probe = 0;
    const caughtUp = async () => {
      try {
        const out = path.join(dir, `probe-${probe++}.db`);
        return JSON.stringify(await restored(client, stages, out)) === JSON.stringify(appRows(app));
      } catch {
        return false;
      }
    };
    try {
      await until(caughtUp, 30_000, 'Litestream to replicate the first rows');
      insertRows(app, 20, 3000);
      await until(caughtUp, 30_000, 'Litestream to replicate more rows');
    } finally {
      const code = await ls.stop();
      assert.equal(code, 0, `litestream exited ${code}: ${ls.output()}`);
    }
    // Litestream's objects are age(LZ4) and open with the other recipient's identity too.
    assert.deepEqual(await restored(client, [lz4Stage, ageStage({ identities: [other] })], path.join(dir, 'other.db')), appRows(app));
    await failsWith(restored(client, undefined, path.join(dir, 'none.db')), 'WALSHIP_AGE_NO_IDENTITY');
    if (needTools(t)) {
      const keyFile = path.join(dir, 'key.txt');
      fs.writeFileSync(keyFile, id);
      assert.ok(checkObjectsWithAgeCli(replicaDir, keyFile) >= 2);
    }

    // walship takes over: reading the replica's position needs the identity.
    const gens = await client.generations();
    assert.equal(gens.length, 1);
    const rep = new Replicator(dbPath, { monitorInterval: 25, replicas: [{ client, syncInterval: 25, stages }] });
    const continued: string[] = [];
    rep.on('litestream-continued', (e) => continued.push(e.generation));
    await rep.start();
    try {
      insertRows(app, 10);
      await rep.sync({ timeout: 10_000 });
      assert.equal(rep.status().replicas[0]!.lastError, undefined);
    } finally {
      await rep.stop();
    }
    assert.deepEqual(continued, gens);
    assert.deepEqual(await client.generations(), gens);
    assert.deepEqual(await restored(client, stages, path.join(dir, 'after.db')), appRows(app));
  });

  test('walship writes an encrypted replica (two generations); Litestream restores it', async (t) => {
    const bin = litestreamBin(t);
    if (!bin) return;
    const dir = await tempDir('walship-age-to-litestream-');
    const dbPath = path.join(dir, 'app.db');
    const replicaDir = path.join(dir, 'replica');
    const client = new FileReplicaClient({ path: replicaDir });
    const id = generateAgeIdentity();
    const app = openApp(dbPath);
    t.after(() => app.close());
    const stages = [lz4Stage, ageStage({ recipients: [ageIdentityToRecipient(id)] })];
    for (let round = 0; round < 2; round++) {
      if (round === 1) fs.rmSync(path.join(dir, '.app.db-walship'), { recursive: true, force: true }); // a new generation
      const rep = new Replicator(dbPath, { monitorInterval: 25, replicas: [{ client, syncInterval: 25, stages }] });
      await rep.start();
      insertRows(app, 60, round === 0 ? 100 : 2000);
      await rep.sync({ timeout: 10_000 });
      await rep.stop();
    }
    assert.equal((await client.generations()).length, 2);
    const cfg = path.join(dir, 'litestream.yml');
    fs.writeFileSync(cfg, config(dbPath, replicaDir, { identities: [id] }));
    const out = path.join(dir, 'by-litestream.db');
    await restoreWithLitestream(bin, out, ['-config', cfg, dbPath]);
    assert.deepEqual(rows(out), appRows(app));
    // Without the identity Litestream cannot read it either.
    fs.writeFileSync(cfg, `dbs:\n  - path: ${dbPath}\n    replicas:\n      - type: file\n        path: ${replicaDir}\n`);
    await assert.rejects(restoreWithLitestream(bin, path.join(dir, 'plain.db'), ['-config', cfg, dbPath]));
  });
});
