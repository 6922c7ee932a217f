import fs from 'node:fs';
import path from 'node:path';

/**
 * Change notifications for a database's `-wal` (and the database file appearing, disappearing
 * or being replaced), so an idle replicator sleeps instead of polling.
 *
 * Every SQLite connection that writes a WAL database runs on this host (WAL mode needs shared
 * memory), so every commit is a `write()` to the `-wal` through this kernel, which inotify
 * reports as IN_MODIFY; walship's own reads and opens are not reported (Node watches without
 * IN_ACCESS/IN_OPEN). The `-shm` is written through mmap, which inotify does not see, and is
 * not needed: a commit always writes the `-wal`.
 *
 * One `fs.watch` per directory, shared by every database in it (of this thread), so many
 * databases do not use up inotify watches; events are filtered by file name. The directory is
 * watched rather than the file because the `-wal` is deleted and recreated (and may not exist
 * yet, nor the database). Watchers are not referenced: they never keep a process alive.
 *
 * One-shot: a subscription reports one change, then nothing until its owner calls `arm()`
 * (right before it scans). When no subscription of a directory is armed the directory's watch
 * is closed, so a busy writer costs neither the kernel nor this thread an event per commit
 * (measured: ~18 µs of this thread's CPU per event, 0.9 s per 10 s at 8k commits/s); it is
 * reopened by the next `arm()`.
 *
 * A watch that fails (or that the environment disables with `WALSHIP_WAL_WATCH=0`) reports
 * `active === false`: its owner then polls at its monitor interval, as without a watch.
 * `refresh()` retries a failed watch and re-creates one whose directory was replaced.
 */
export interface WalWatch {
  /** True while change notifications work (also while disarmed); false: poll. */
  readonly active: boolean;
  /** Reports the next change (once). Call right before scanning: the scan sees everything before. */
  arm(): void;
  /** Re-creates the directory's watch when it failed or the directory was replaced (cheap: one stat). */
  refresh(): void;
  /** Stops notifications (idempotent). */
  close(): void;
}

/** True unless `WALSHIP_WAL_WATCH` is `0`, `false`, `off` or `no` (then replicators poll). */
function walWatchEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.WALSHIP_WAL_WATCH?.trim().toLowerCase();
  return !(v === '0' || v === 'false' || v === 'off' || v === 'no');
}

class Subscription implements WalWatch {
  readonly dbName: string;
  readonly walName: string;
  readonly onChange: () => void;
  dir: DirWatch | undefined;
  armed = true;
  constructor(dbPath: string, onChange: () => void) {
    this.dbName = path.basename(dbPath);
    this.walName = `${this.dbName}-wal`;
    this.onChange = onChange;
  }
  get active(): boolean {
    return this.dir?.watching === true;
  }
  arm(): void {
    this.armed = true;
    this.dir?.arm();
  }
  refresh(): void {
    this.dir?.refresh();
  }
  close(): void {
    const d = this.dir;
    this.dir = undefined;
    this.armed = false;
    d?.remove(this);
  }
  /** One event from the directory; `filename` null when the platform gives none. */
  deliver(event: string, filename: string | null): void {
    // The -wal: every change (append, truncate, delete, create). The database: only appearing,
    // disappearing or being replaced; checkpoints writing its pages are not news.
    if (this.armed && (filename === null || filename === this.walName || (filename === this.dbName && event === 'rename'))) this.wake();
  }
  /** Reports a change (or a change of the watch itself) now, armed or not. */
  wake(): void {
    this.armed = false;
    this.onChange();
  }
}

const dirs = new Map<string, DirWatch>();

function inoOf(dir: string): number {
  try {
    return fs.statSync(dir).ino;
  } catch {
    return -1;
  }
}

class DirWatch {
  readonly dir: string;
  readonly subs = new Set<Subscription>();
  #watcher: fs.FSWatcher | undefined;
  #ino = -1;
  #failed = false;
  constructor(dir: string) {
    this.dir = dir;
    this.#open();
  }

  /** Open or paused (closed because nobody is armed); false after a failure. */
  get watching(): boolean {
    return !this.#failed;
  }

  #open(): void {
    this.#ino = inoOf(this.dir);
    try {
      if (this.#ino === -1) throw new Error('directory gone');
      const w = fs.watch(this.dir, { persistent: false }, (event, filename) =>
        this.#deliver(w, event, filename === null ? null : String(filename)),
      );
      w.on('error', () => this.#fail(w));
      this.#watcher = w;
      this.#failed = false;
    } catch {
      // ENOSPC/EMFILE (inotify limits), EACCES, a platform without fs.watch: poll.
      this.#watcher = undefined;
      this.#failed = true;
    }
  }

  #close(): void {
    const w = this.#watcher;
    this.#watcher = undefined;
    w?.close();
  }

  #deliver(w: fs.FSWatcher, event: string, filename: string | null): void {
    if (this.#watcher !== w) return; // closed meanwhile
    if (filename === path.basename(this.dir) && event === 'rename') this.refresh(); // the directory itself moved or went?
    if (this.#watcher !== w) return; // it did: reopened, everyone woken
    let armed = false;
    for (const s of this.subs) {
      s.deliver(event, filename);
      armed ||= s.armed;
    }
    if (!armed) this.#close(); // paused until the next arm()
  }

  #fail(w: fs.FSWatcher): void {
    if (this.#watcher !== w) return;
    this.#close();
    this.#failed = true;
    // Wake every owner so it notices `active === false` and polls.
    for (const s of this.subs) s.wake();
  }

  arm(): void {
    if (!this.#watcher && !this.#failed) this.#open();
  }

  refresh(): void {
    if (!this.#failed && inoOf(this.dir) === this.#ino) return;
    this.#close();
    this.#open();
    // Changes may have been missed meanwhile.
    for (const s of this.subs) s.wake();
  }

  remove(s: Subscription): void {
    this.subs.delete(s);
    if (this.subs.size > 0) return;
    this.#close();
    if (dirs.get(this.dir) === this) dirs.delete(this.dir);
  }
}

/**
 * Calls `onChange` (synchronously, from the event loop) once the `-wal` of `dbPath` changes or
 * `dbPath` appears, disappears or is replaced, then again only after `arm()`. Never throws:
 * when watching is impossible the result is inactive.
 */
export function watchWal(dbPath: string, onChange: () => void): WalWatch {
  const abs = path.resolve(dbPath);
  const sub = new Subscription(abs, onChange);
  if (!walWatchEnabled()) return sub;
  const dir = path.dirname(abs);
  let d = dirs.get(dir);
  if (!d) {
    d = new DirWatch(dir);
    dirs.set(dir, d);
  }
  d.subs.add(sub);
  sub.dir = d;
  return sub;
}

/** Directories watched by this thread (for tests). */
export function watchedDirectoryCount(): number {
  return dirs.size;
}
