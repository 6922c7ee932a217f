/**
 * `replicate -exec`: exit codes when the child is killed by a signal, and the second signal
 * (exit at once, without waiting for the child or the final sync).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { constants } from 'node:os';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { before, describe, test } from 'node:test';
import { FILE_BACKEND, REPLICATOR, RESTORE, fileUrl, openWriter, readIds, requires, runCli, spawnCli, tempDir } from './helpers.js';

/** Waits for the CLI process itself to exit (not for its stdio, which an orphaned child may keep open). */
async function exitOf(child: import('node:child_process').ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, signal: child.signalCode };
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  return { code, signal };
}

/** Sends `signal` to `pid` unless it is gone. */
function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

describe('replicate -exec and signals', () => {
  let skip: string | false = false;
  before(async () => {
    skip = await requires([FILE_BACKEND, REPLICATOR, RESTORE]);
  });

  for (const sig of ['SIGKILL', 'SIGHUP', 'SIGTERM'] as const) {
    test(`a child killed by ${sig} (not sent by walship): walship syncs, shuts down and exits 128+${constants.signals[sig]}`, async (t) => {
      if (skip) return t.skip(skip);
      const { dir, cleanup } = tempDir();
      t.after(cleanup);
      const db = join(dir, 'app.db');
      const replica = join(dir, 'replica');
      // The child writes a row, then kills itself with the signal.
      const script = join(dir, 'die.mjs');
      writeFileSync(
        script,
        `import Database from ${JSON.stringify(import.meta.resolve('better-sqlite3'))};\n` +
          `const db = new Database(process.argv[2]);\n` +
          `db.pragma('journal_mode = WAL');\n` +
          `db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');\n` +
          `for (let i = 0; i < 5; i++) db.prepare('INSERT INTO t (v) VALUES (?)').run('from child');\n` +
          `db.close();\n` +
          `console.log('child dying');\n` +
          `process.kill(process.pid, ${JSON.stringify(sig)});\n` +
          `setInterval(() => {}, 1000);\n`,
      );
      // The database exists before walship starts (its creation while walship waits for it is
      // another test's subject).
      openWriter(db).close();
      const r = await runCli(['replicate', '-exec', `'${process.execPath}' '${script}' '${db}'`, db, replica]);
      assert.equal(r.signal, null, 'walship exited by itself');
      assert.equal(r.code, 128 + constants.signals[sig], `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /child dying/);
      assert.match(r.stdout, new RegExp(`msg="subprocess exited, walship shutting down" code=${sig}`));
      assert.match(r.stdout, /msg="walship shut down"/, 'shutdown (with the final sync) happened');
      // The final sync shipped what the child committed before dying.
      const out = join(dir, 'restored.db');
      const rr = await runCli(['restore', '-o', out, fileUrl(replica)]);
      assert.equal(rr.code, 0, rr.stderr);
      assert.deepEqual(readIds(out), [1, 2, 3, 4, 5]);
    });
  }

  test('a child that ends itself with another signal than the forwarded one is not a clean exit', async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const script = join(dir, 'trap.mjs');
    writeFileSync(
      script,
      `process.on('SIGTERM', () => { console.log('child got SIGTERM'); process.kill(process.pid, 'SIGKILL'); }); console.log('child ready'); setInterval(() => {}, 1000);\n`,
    );
    const cli = spawnCli(['replicate', '-exec', `${process.execPath} ${script}`, join(dir, 'a.db'), join(dir, 'r')]);
    t.after(() => cli.kill('SIGKILL'));
    await cli.waitFor(/child ready/);
    cli.kill('SIGTERM');
    const r = await cli.exited;
    assert.match(r.stdout, /child got SIGTERM/);
    assert.match(r.stdout, /msg="exec process exited" code=SIGKILL/);
    assert.equal(r.code, 128 + constants.signals.SIGKILL);
  });

  for (const [first, second, code] of [
    ['SIGINT', 'SIGINT', 130],
    ['SIGTERM', 'SIGINT', 130],
    ['SIGINT', 'SIGTERM', 143],
  ] as const) {
    test(`${first} then ${second} while the child ignores signals: walship exits ${code} at once, forwarding the second signal`, async (t) => {
      if (skip) return t.skip(skip);
      const { dir, cleanup } = tempDir();
      t.after(cleanup);
      // A child that never exits by itself: without the immediate exit walship would wait for it
      // forever (bounded only by the harness's kill, which would show as signal SIGKILL).
      const script = join(dir, 'stubborn.mjs');
      writeFileSync(
        script,
        `let n = 0;\n` +
          `for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => console.log('child got ' + s + ' #' + ++n));\n` +
          `console.log('child ready pid=' + process.pid);\n` +
          `setInterval(() => {}, 1000);\n`,
      );
      const cli = spawnCli(['replicate', '-exec', `${process.execPath} ${script}`, join(dir, 'a.db'), join(dir, 'r')]);
      const [, pid] = await cli.waitFor(/child ready pid=(\d+)/);
      t.after(() => {
        killQuietly(Number(pid));
        cli.kill('SIGKILL');
      });
      cli.kill(first);
      await cli.waitFor(new RegExp(`child got ${first} #1`));
      await cli.waitFor(/msg="waiting for exec process to close"/);
      // Later than a duplicate delivery of the first signal (which is ignored, see below).
      await new Promise((r) => setTimeout(r, 600));
      cli.kill(second);
      const exit = await exitOf(cli.child);
      assert.deepEqual(exit, { code, signal: null }, `${cli.output().stdout}\n${cli.output().stderr}`);
      // The second signal was forwarded to the child, which is still running.
      await cli.waitFor(new RegExp(`child got ${second} #2`)).catch(() => {});
      const { stdout } = cli.output();
      assert.match(stdout, new RegExp(`level=WARN msg="second signal received, exiting immediately" signal=${second}`));
      assert.match(stdout, new RegExp(`child got ${second} #2`), 'second signal forwarded to the child');
      assert.doesNotMatch(stdout, /msg="walship shut down"/, 'did not wait for the shutdown');
      process.kill(Number(pid), 0); // the child is still alive (throws ESRCH otherwise)
    });
  }

  test('one Ctrl-C delivered twice (terminal and a wrapper such as npm run): a normal shutdown with the final sync', async (t) => {
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const db = join(dir, 'app.db');
    const w = openWriter(db);
    for (let i = 0; i < 20; i++) w.insert();
    const cli = spawnCli(['replicate', db, join(dir, 'r')]);
    t.after(() => cli.kill('SIGKILL'));
    await cli.waitFor(/msg="replicating to"/);
    // Committed after the last upload: only the final sync of a normal shutdown ships it.
    for (let i = 0; i < 20; i++) w.insert();
    cli.kill('SIGINT');
    // The repeat arrives just after the first was handled (two kills at once would merge into
    // one pending signal).
    await cli.waitFor(/msg="signal received, walship shutting down"/);
    cli.kill('SIGINT');
    const r = await cli.exited;
    w.close();
    assert.doesNotMatch(r.stdout, /second signal received/);
    assert.match(r.stdout, /msg="walship shut down"/);
    assert.equal(r.code, 0);
  });
});
