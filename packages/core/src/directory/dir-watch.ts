import fs from 'node:fs';

/**
 * Tells when a directory's entries may have changed, cheaply whatever the write rate.
 *
 * One `fs.watch` (inotify) per directory. inotify also reports every write to a file in it —
 * each commit of every database there writes its `-wal` — so a watch is one-shot: its first
 * event closes it and calls `onChange`, and the owner re-arms it (`arm()`) right before it
 * lists the directory again, which it does at most once per interval (directory-replicator.ts). A directory whose databases commit
 * thousands of times a second thus costs one listing per interval, and an idle one nothing.
 * A watch that cannot be made (inotify limits, a file system without it) reports
 * `active === false`; the owner then lists the directory every poll interval instead.
 * Watches are not referenced: they never keep a process alive.
 */
export class DirWatch {
  readonly dir: string;
  readonly #onChange: () => void;
  #watcher: fs.FSWatcher | undefined;
  #failed = false;
  #closed = false;

  constructor(dir: string, onChange: () => void) {
    this.dir = dir;
    this.#onChange = onChange;
  }

  /** True while notifications work (a failed watch: the owner polls). */
  get active(): boolean {
    return !this.#failed;
  }

  /** Watches for the next change (call right before listing the directory). */
  arm(): void {
    if (this.#closed || this.#watcher) return;
    try {
      const w = fs.watch(this.dir, { persistent: false }, () => this.#fire(w));
      w.on('error', () => this.#fire(w));
      this.#watcher = w;
      this.#failed = false;
    } catch {
      this.#failed = true;
    }
  }

  /** The first event of an armed watch: close it and tell the owner, which paces the listings. */
  #fire(w: fs.FSWatcher): void {
    if (this.#watcher !== w) return;
    w.close();
    this.#watcher = undefined;
    if (!this.#closed) this.#onChange();
  }

  close(): void {
    this.#closed = true;
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}
