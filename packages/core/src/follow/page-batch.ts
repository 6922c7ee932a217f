import { open, rm, type FileHandle } from 'node:fs/promises';
import { writeFullAt } from '../util/fs.js';
import type { PageSink } from '../restore/wal-applier.js';

/** Bytes of pages gathered in memory before they are appended to the spill file. */
const BUFFER_BYTES = 1024 * 1024;

/**
 * The pages a follower has verified but not yet written to its database: the committed
 * transactions of the batch (the newest version of each page) and the transaction being read.
 * Pages go to a spill file (through a 1 MiB buffer), so memory holds only page numbers and
 * offsets whatever the batch's size. `mark()` / `rollback()` undo one segment's commits when
 * the segment turns out damaged.
 */
export class PageBatch implements PageSink {
  #fh: FileHandle | undefined;
  readonly #buf: Buffer;
  #fill = 0;
  /** Bytes of the spill file written (the buffer's bytes start here). */
  #fileEnd = 0;
  #pending = new Map<number, number>();
  #committed = new Map<number, number>();
  /** Page count after the batch's last commit. */
  dbPages: number | undefined;
  /** Commits in the batch. */
  commits = 0;
  #mark: { pending: Map<number, number>; undo: Map<number, number>; dbPages: number | undefined; commits: number } | undefined;

  constructor(
    readonly spillPath: string,
    readonly pageSize: number,
  ) {
    this.#buf = Buffer.allocUnsafeSlow(Math.max(pageSize, Math.floor(BUFFER_BYTES / pageSize) * pageSize));
  }

  get pendingPages(): number {
    return this.#pending.size;
  }

  /** Distinct pages committed in the batch. */
  get pages(): number {
    return this.#committed.size;
  }

  pendingSlot(pgno: number): [Buffer, number] | undefined {
    if (this.#fill + this.pageSize > this.#buf.length) return undefined;
    const at = this.#fill;
    this.#pending.set(pgno, this.#fileEnd + at);
    this.#fill += this.pageSize;
    return [this.#buf, at];
  }

  async spill(pgno: number, page: Uint8Array, offset: number): Promise<void> {
    await this.#flushBuffer();
    const slot = this.pendingSlot(pgno)!;
    this.#buf.set(page.subarray(offset, offset + this.pageSize), slot[1]);
  }

  commit(dbPages: number): undefined {
    const undo = this.#mark?.undo;
    for (const [pgno, at] of this.#pending) {
      if (undo && !undo.has(pgno)) undo.set(pgno, this.#committed.get(pgno) ?? -1);
      this.#committed.set(pgno, at);
    }
    this.#pending.clear();
    this.dbPages = dbPages;
    this.commits++;
    return undefined;
  }

  /** Remembers the batch as it is (before a segment is fed). */
  mark(): void {
    this.#mark = { pending: new Map(this.#pending), undo: new Map(), dbPages: this.dbPages, commits: this.commits };
  }

  /** Undoes everything since {@link mark}. */
  rollback(): void {
    const m = this.#mark;
    if (!m) return;
    for (const [pgno, at] of m.undo) {
      if (at < 0) this.#committed.delete(pgno);
      else this.#committed.set(pgno, at);
    }
    this.#pending = m.pending;
    this.dbPages = m.dbPages;
    this.commits = m.commits;
    this.#mark = undefined;
  }

  /**
   * Flushes the buffer and returns the committed pages (page numbers and spill-file offsets)
   * for the apply worker.
   */
  async committedPages(): Promise<{ pgnos: Uint32Array; offsets: Float64Array }> {
    await this.#flushBuffer();
    const pgnos = new Uint32Array(this.#committed.size);
    const offsets = new Float64Array(this.#committed.size);
    let i = 0;
    for (const [pgno, at] of this.#committed) {
      pgnos[i] = pgno;
      offsets[i++] = at;
    }
    return { pgnos, offsets };
  }

  /** Forgets the committed pages once they are written to the database. */
  applied(): void {
    this.#committed.clear();
    this.commits = 0;
    this.#mark = undefined;
    if (this.#pending.size === 0) {
      // Nothing refers to the spill file any more: start it over.
      this.#fileEnd = 0;
      this.#fill = 0;
    }
  }

  /** Drops the transaction being read (after damage). */
  discardPending(): void {
    this.#pending.clear();
  }

  async close(): Promise<void> {
    await this.#fh?.close().catch(() => {});
    this.#fh = undefined;
    await rm(this.spillPath, { force: true }).catch(() => {});
  }

  async #flushBuffer(): Promise<void> {
    if (this.#fill === 0) return;
    this.#fh ??= await open(this.spillPath, 'w+', 0o600);
    await writeFullAt(this.#fh, this.#buf, 0, this.#fill, this.#fileEnd);
    this.#fileEnd += this.#fill;
    this.#fill = 0;
  }
}
