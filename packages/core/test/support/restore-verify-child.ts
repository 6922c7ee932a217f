/**
 * Child process for the kill -9 test "while SQLite has the temp database open": restores
 * `<replicaDir>` into `<output>` and, right after SQLite's integrity check of the temporary
 * database returns — the connection is still open, so its `-wal` and `-shm` exist — prints
 * `sqlite-open` and blocks its event loop, so the parent can kill it at exactly that moment.
 *
 * The restore loads the same better-sqlite3 module as this script, so wrapping its `pragma`
 * here sees the restore's own call.
 */
import Database from 'better-sqlite3';
import { FileReplicaClient } from '@walship/file';
import { restore } from '../../src/restore/index.js';

const [replicaDir, output] = process.argv.slice(2);
const pragma = Database.prototype.pragma;
Database.prototype.pragma = function (this: Database.Database, source: string, options?: Database.PragmaOptions) {
  const result = pragma.call(this, source, options);
  if (/^\s*(integrity|quick)_check/.test(source)) {
    process.stdout.write('sqlite-open\n');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120_000);
  }
  return result;
} as typeof pragma;
await restore({
  outputPath: output!,
  replicas: [{ name: 'file', client: new FileReplicaClient({ path: replicaDir! }) }],
  parallelism: 2,
});
process.stdout.write('done\n');
