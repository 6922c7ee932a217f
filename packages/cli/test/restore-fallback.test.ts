/**
 * `walship restore` with several replicas in the config: an unreachable one is skipped and the
 * log says which replica was used and why the other was not (issue 14, item 4; the fallback
 * rules themselves are tested in core's restore-fallback.test.ts).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FILE_BACKEND, RESTORE, makeReplica, readIds, requires, runCli, tempDir, writeConfig } from './helpers.js';

test('restore skips an unreachable replica and names the one it used', async (t) => {
  const missing = await requires([FILE_BACKEND, RESTORE]);
  if (missing) return t.skip(missing);
  const { dir, cleanup } = tempDir('walship-cli-fallback-');
  t.after(cleanup);
  const { db, replica, ids } = await makeReplica(dir, 30);
  const broken = join(dir, 'not-a-directory');
  writeFileSync(broken, 'x');
  const cfg = writeConfig(
    dir,
    `dbs:\n  - path: ${db}\n    replicas:\n      - name: gone\n        path: ${broken}\n      - name: backup\n        path: ${replica}\n`,
  );
  const out = join(dir, 'restored.db');
  const r = await runCli(['restore', '-config', cfg, '-o', out, db]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readIds(out), ids);
  const log = r.stdout + r.stderr;
  assert.match(log, /msg="replica unreachable, skipping it" replica=gone reason="listing failed: /);
  assert.match(log, /msg="restore finished" [^\n]*replica=backup [^\n]*skipped="gone: listing failed: /);
});
