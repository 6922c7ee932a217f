/**
 * Child process: another process's connection that runs `PRAGMA wal_checkpoint(<mode>)` on demand.
 *
 * `checkpoint-child.ts <dbPath> [mode]` prints `ready`; then for each stdin line `ckpt <n>` it
 * opens a connection (the only one in this process, so SQLite maps the `-shm` afresh, as a newly
 * started application would), runs the checkpoint (busy_timeout 0), closes the connection and
 * prints `ckpt <n> busy|completed|error <detail>` with the pragma's row (`busy log checkpointed`).
 * POSIX locks belong to processes, so only a checkpoint from another process shows what SQLite's
 * locks really refuse (within one process SQLite also tracks its own connections' locks).
 */
import readline from 'node:readline';
import Database from 'better-sqlite3';

const [dbPath, mode = 'TRUNCATE'] = process.argv.slice(2);
process.stdout.write('ready\n');
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const m = /^ckpt (\d+)$/.exec(line.trim());
  if (!m) return;
  let out: string;
  const db = new Database(dbPath!, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 0');
    const [r] = db.pragma(`wal_checkpoint(${mode})`) as Array<{ busy: number; log: number; checkpointed: number }>;
    out = `${r!.busy === 1 ? 'busy' : 'completed'} ${r!.busy} ${r!.log} ${r!.checkpointed}`;
  } catch (err) {
    const code = String((err as { code?: unknown }).code ?? '');
    out = code.startsWith('SQLITE_BUSY') ? `busy ${code}` : `error ${String(err)}`;
  } finally {
    db.close();
  }
  process.stdout.write(`ckpt ${m[1]} ${out}\n`);
});
