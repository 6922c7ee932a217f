import fs from 'node:fs';

/**
 * Tells when a directory's entries may have changed, cheaply whatever the write rate.
 *
 * One `fs.watch` (inotify) per directory. inotify also reports every write to a file in it —
 * each commit of every database there writes its `-wal` — so a watch is one-shot: its first
 * event closes it and schedules `onChange`, and the owner re-arms it (`arm()`) right before it
 * lists the directory again, at most once per `minGapMs`. A directory whose databases commit
 * thousands of times a second thus costs one listing per `minGapMs`, and an idle one nothing.
 * A watch that cannot be made (inotify limits, a file system without it) reports
 * `active === false`; the owner then lists the directory every poll interval instead.
 * Watches are not referenced: they never keep a process alive.
 */
export class DirWatch {
  readonly dir: string;
  readonly #onChange: () => void;
  readonly #minGapMs: number;
  #watcher: fs.FSWatcher | undefined;
  #failed = false;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #armedAt = 0;

  constructor(dir: string, onChange: () => void, minGapMs: number) {
    this.dir = dir;
    this.#onChange = onChange;
    this.#minGapMs = minGapMs;
  }

  /** True while notifications work (a failed watch: the owner polls). */
  get active(): boolean {
    return !this.#failed;
  }

  /** Watches for the next change (call right before listing the directory). */
  arm(): void {
    if (this.#closed || this.#watcher) return;
    this.#armedAt = performance.now();
    try {
      const w = fs.watch(this.dir, { persistent: false }, () => this.#fire());
      w.on('error', () => this.#fire());
      this.#watcher = w;
      this.#failed = false;
    } catch {
      this.#failed = true;
    }
  }

  #fire(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#closed || this.#timer) return;
    const wait = Math.max(0, this.#armedAt + this.#minGapMs - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#closed) this.#onChange();
    }, wait);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
