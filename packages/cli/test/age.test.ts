// Issue #15: the `age:` replica block of litestream.yml v0.3 — parsing (inline keys, key-file
// text, key-file paths, env expansion), one-line errors naming file, key and line, and the CLI
// end to end: walship replicate + restore, and the same config file read by Litestream v0.3.13.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { ageIdentityToRecipient, ConfigError, generateAgeIdentity } from '@walship/core';
import { parseConfigText } from '../src/config.js';
import { BackendRegistry } from '../src/registry.js';
import { litestreamBin, openWriter, readIds, runCli, spawnCli, tempDir, writeConfig } from './helpers.js';

const execFileP = promisify(execFile);
const opts = (env: Record<string, string> = {}) => ({ registry: new BackendRegistry(), env, cwd: '/' });
const FILE = '/etc/walship.yml';

function yaml(age: string): string {
  return `dbs:\n  - path: /data/app.db\n    replicas:\n      - path: /backup/a\n        age:\n${age}`;
}

async function configError(text: string, env: Record<string, string> = {}): Promise<string> {
  try {
    await parseConfigText(text, FILE, opts(env));
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.ok(!err.message.includes('\n'), err.message);
    return err.message;
  }
  assert.fail('expected a config error');
}

describe('age: config', () => {
  const id1 = generateAgeIdentity();
  const id2 = generateAgeIdentity();
  const r1 = ageIdentityToRecipient(id1);
  const r2 = ageIdentityToRecipient(id2);

  test('inline keys, identity-file text with comments, key-file paths and $VARS', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const keyFile = join(dir, 'age.key');
      writeFileSync(keyFile, `# created: 2024-01-01T00:00:00Z\n# public key: ${r2}\n${id2}\n`);
      const cfg = await parseConfigText(
        yaml(
          `          identities:\n            - ${id1}\n            - |\n              # old key, kept to read old objects\n              ${id2}\n            - ${keyFile}\n          recipients:\n            - \${AGE_RECIPIENT}\n            - "${r2}"\n`,
        ),
        FILE,
        opts({ AGE_RECIPIENT: r1 }),
      );
      const r = cfg.dbs[0]!.replicas[0]!;
      assert.deepEqual(r.age, { identities: 3, recipients: 2 });
      assert.deepEqual(
        r.stages!.map((s) => s.name),
        ['lz4', 'age'],
      );
      const stage = r.stages![1] as unknown as { keys: { identities: { recipient: string }[]; recipients: { text: string }[] } };
      assert.deepEqual(
        stage.keys.identities.map((i) => i.recipient),
        [r1, r2, r2],
      );
      assert.deepEqual(
        stage.keys.recipients.map((x) => x.text),
        [r1, r2],
      );
      // No age block: default stages.
      const plain = await parseConfigText('dbs:\n  - path: /data/app.db\n    replicas:\n      - path: /backup/a\n', FILE, opts());
      assert.equal(plain.dbs[0]!.replicas[0]!.stages, undefined);
      // Only identities: objects are written to their recipients; only recipients: write-only.
      const onlyIds = await parseConfigText(yaml(`          identities: [${id1}]\n`), FILE, opts());
      assert.deepEqual(onlyIds.dbs[0]!.replicas[0]!.age, { identities: 1, recipients: 0 });
    } finally {
      cleanup();
    }
  });

  test('errors: one line naming the file, the key path and the line of the bad key', async () => {
    const bad = id1.slice(0, -2) + (id1.endsWith('QQ') ? 'PP' : 'QQ');
    // A bad key inside a block: the line of the key itself (line 10).
    assert.equal(
      await configError(
        yaml(`          identities:\n            - ${id1}\n            - |\n              # comment\n              ${bad}\n`),
      ),
      `${FILE}:10: dbs[0].replicas[0].age.identities[1]: malformed secret key: invalid checksum`,
    );
    assert.equal(
      await configError(yaml(`          recipients: [${r1}, age1notakey]\n`)),
      `${FILE}:6: dbs[0].replicas[0].age.recipients[1]: malformed recipient: invalid character`,
    );
    // An identity given as a recipient, and the reverse: the type is named, never the key.
    const swapped = await configError(yaml(`          recipients:\n            - ${id1}\n`));
    assert.match(
      swapped,
      /^\/etc\/walship\.yml:7: dbs\[0\]\.replicas\[0\]\.age\.recipients\[0\]: malformed recipient: unknown type "AGE-SECRET-KEY-"/,
    );
    assert.ok(!swapped.includes(id1.slice(16)));
    assert.match(
      await configError(yaml(`          identities:\n            - ${r1}\n`)),
      /:7: dbs\[0\]\.replicas\[0\]\.age\.identities\[0\]: malformed secret key: unknown type/,
    );
    // From the environment, as other keys.
    assert.match(
      await configError(yaml(`          identities: ["\${AGE_ID}"]\n`), { AGE_ID: 'AGE-SECRET-KEY-1XYZ' }),
      /:6: .*age\.identities\[0\]: malformed secret key/,
    );
    assert.match(await configError(yaml(`          identities: ["\${AGE_ID}"]\n`)), /:6: .*age\.identities\[0\]: no secret keys found/);
    // Key files: the file and its line.
    const { dir, cleanup } = tempDir();
    try {
      const keyFile = join(dir, 'bad.key');
      writeFileSync(keyFile, `# first line\n\n${bad}\n`);
      assert.equal(
        await configError(yaml(`          identities:\n            - ${keyFile}\n`)),
        `${FILE}:7: dbs[0].replicas[0].age.identities[0]: ${keyFile}:3: malformed secret key: invalid checksum`,
      );
      assert.match(
        await configError(yaml(`          identities:\n            - ${join(dir, 'missing.key')}\n`)),
        /:7: .*age\.identities\[0\]: cannot read identity file .*missing\.key: ENOENT/,
      );
    } finally {
      cleanup();
    }
    assert.match(
      await configError(yaml(`          recipient: [${r1}]\n`)),
      /:6: dbs\[0\]\.replicas\[0\]\.age\.recipient: unknown age key "recipient": did you mean "recipients"\?/,
    );
    assert.match(await configError(yaml(`          identities: ${id1}\n`)), /:6: .*age\.identities: age\.identities must be a list/);
    assert.match(await configError(yaml(`          {}\n`)), /:6: dbs\[0\]\.replicas\[0\]\.age: age needs keys: add recipients/);
    assert.match(
      await configError(`dbs:\n  - path: /data/app.db\n    replicas:\n      - path: /backup/a\n        age: yes\n`),
      /:5: .*expected key: value pairs for age/,
    );
  });
});

describe('age: CLI end to end', () => {
  test('walship replicate + restore with age; Litestream v0.3.13 restores from the same config; errors', async (t) => {
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const db = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    const id = generateAgeIdentity();
    const keyFile = join(dir, 'age.key');
    writeFileSync(keyFile, `# walship test key\n${id}\n`);
    const base = `dbs:\n  - path: ${db}\n    replicas:\n      - type: file\n        path: ${replica}\n        sync-interval: 100ms\n`;
    const full = writeConfig(
      dir,
      `${base}        age:\n          identities:\n            - \${AGE_IDENTITY}\n          recipients:\n            - ${ageIdentityToRecipient(id)}\n`,
      'full.yml',
    );
    const writeOnly = writeConfig(
      dir,
      `shutdown-sync-timeout: 1s\n${base}        age:\n          recipients:\n            - ${ageIdentityToRecipient(id)}\n`,
      'write-only.yml',
    );
    const fileKey = writeConfig(dir, `${base}        age:\n          identities: [${keyFile}]\n`, 'key-file.yml');
    const env = { AGE_IDENTITY: id };
    const w = openWriter(db);
    t.after(() => w.close());
    for (let i = 0; i < 40; i++) w.insert();
    const cli = spawnCli(['replicate', '-config', full], { env });
    await cli.waitFor(/msg="replicating to"/);
    await cli.waitFor(/wal segment written/);
    cli.kill('SIGTERM');
    const r = await cli.exited;
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const ids = Array.from({ length: 40 }, (_, i) => i + 1);

    // walship restore: the identity from the environment, or from a key file.
    const out1 = join(dir, 'out1.db');
    const res1 = await runCli(['restore', '-config', full, '-o', out1, db], { env });
    assert.equal(res1.code, 0, res1.stderr);
    assert.deepEqual(readIds(out1), ids);
    const out2 = join(dir, 'out2.db');
    assert.equal((await runCli(['restore', '-config', fileKey, '-o', out2, db])).code, 0);
    assert.deepEqual(readIds(out2), ids);

    // Without identities: one line saying what to add; no output file.
    const out3 = join(dir, 'out3.db');
    const res3 = await runCli(['restore', '-config', writeOnly, '-o', out3, db]);
    assert.equal(res3.code, 1);
    assert.match(
      res3.stderr,
      /object is age-encrypted but no age identity is configured to read it: add the identity \(AGE-SECRET-KEY-1…\) of one of its recipients to age\.identities/,
    );
    assert.equal(
      res3.stderr
        .trim()
        .split('\n')
        .filter((l) => /error|walship:/.test(l)).length,
      1,
      res3.stderr,
    );
    const res4 = await runCli(['restore', '-o', join(dir, 'out4.db'), `file://${replica}`]);
    assert.equal(res4.code, 1);
    assert.match(res4.stderr, /age-encrypted/);

    // replicate with recipients only: continuing needs the replica's position: the log says what to add.
    w.insert();
    const wo = spawnCli(['replicate', '-config', writeOnly]);
    await wo.waitFor(
      /cannot read the replica's position from its last wal segment .*add the identity \(AGE-SECRET-KEY-1…\) of one of its recipients to age\.identities/,
    );
    wo.kill('SIGTERM');
    await wo.exited;

    // The very same config file, read by Litestream v0.3.13.
    const bin = litestreamBin();
    if (!bin) {
      if (process.env['CI'] === 'true') assert.fail('the Litestream binary is required under CI=true: set LITESTREAM_BIN');
      t.diagnostic('Litestream binary not found (set LITESTREAM_BIN): its part skipped');
      return;
    }
    const out5 = join(dir, 'by-litestream.db');
    await execFileP(bin, ['restore', '-config', full, '-o', out5, db], { env: { ...process.env, ...env }, timeout: 60_000 });
    assert.deepEqual(readIds(out5), ids);
  });
});
