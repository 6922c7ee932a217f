import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fsyncDirSync, readFullAtSync, writeFullAtSync } from '../util/fs.js';

/**
 * Writes a batch of pages into a rollback-journal-mode SQLite database the way SQLite's own
 * pager commits a transaction (file format, §4 "The Rollback Journal",
 * https://www.sqlite.org/fileformat2.html#the_rollback_journal):
 *
 * 1. `<db>-journal` gets a header (magic, checksum nonce, initial page count, sector size, page
 *    size) and one record per page about to change — page number, the old page, checksum — and
 *    is fsynced, its directory too; then the header's record count is written and fsynced
 *    (SQLite's `synchronous=FULL` order: a journal whose count is still 0 plays back nothing);
 * 2. the new pages are written in place, the file is truncated or extended to the new page
 *    count and fsynced;
 * 3. the journal is deleted (the commit point) and the directory fsynced (where a file system
 *    cannot fsync a directory, a crash may bring the journal back: it then rolls the batch back,
 *    to the previous consistent state).
 *
 * A crash anywhere before 3 leaves a hot journal: the next SQLite connection that locks the
 * database plays it back, so the database holds either the whole batch or none of it. The
 * caller holds SQLite's EXCLUSIVE lock on the database (through a connection of this process)
 * for the whole call, so no reader sees a partly written batch.
 *
 * Page 1 is always written: its file change counter (offset 24) and "version valid for"
 * (offset 92) are incremented so that every reader drops its page cache at its next read
 * transaction, the in-header page count (offset 28) is set, and the read/write versions
 * (offsets 18, 19) are set to 1 (rollback journal), whatever the page carried.
 *
 * Synchronous: runs in the follower's apply worker, never on the application's thread.
 */

const MAGIC = Buffer.from([0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7]);
/** Journal header size: one sector. SQLite takes the sector size recorded in the header. */
const SECTOR_SIZE = 4096;
const BUFFER_BYTES = 1024 * 1024;

/** Where the new version of a page is read from. */
export interface PageSource {
  /** Page numbers to write, each once (any order). */
  readonly pgnos: readonly number[];
  /** Reads the new content of `pgno` into `buf` (exactly one page). */
  read(pgno: number, buf: Buffer): void;
}

/** SQLite's journal record checksum: the nonce plus every 200th byte from the page's end. */
function journalChecksum(nonce: number, page: Buffer): number {
  let sum = nonce;
  for (let i = page.length - 200; i > 0; i -= 200) sum = (sum + page[i]!) >>> 0;
  return sum >>> 0;
}

/** Sets the rollback-journal fields of page 1 (see the module comment); `counter` is the new change counter. */
function patchPageOne(page: Buffer, counter: number, pageCount: number): void {
  page[18] = 1;
  page[19] = 1;
  page.writeUInt32BE(counter >>> 0, 24);
  page.writeUInt32BE(pageCount >>> 0, 28);
  page.writeUInt32BE(counter >>> 0, 92);
}

function writeAll(fd: number, buf: Buffer, length: number, position: number): void {
  writeFullAtSync(fd, buf, 0, length, position);
}

/** Fills `buf` from `position` of `fd`. @throws when the file ends first */
export function readPage(fd: number, buf: Buffer, position: number): void {
  const got = readFullAtSync(fd, buf, 0, buf.length, position);
  if (got < buf.length) throw new Error(`short read at offset ${position + got}`);
}

/**
 * Applies `source` to the database open as `dbFd` (read-write, a descriptor that is never
 * closed: see util/held-files) at `dbPath`, leaving `pageCount` pages. The caller holds
 * SQLite's EXCLUSIVE lock. Returns the new change counter.
 * @throws the file-system error; the journal is left in place (SQLite rolls it back).
 */
export function applyJournaled(
  dbFd: number,
  dbPath: string,
  pageSize: number,
  pageCount: number,
  source: PageSource,
  /** For tests: called after the new pages are written, before the commit (throw to simulate a crash there). */
  beforeCommit?: () => void,
): number {
  const oldSize = fs.fstatSync(dbFd).size;
  const oldPages = Math.floor(oldSize / pageSize);
  const page = Buffer.allocUnsafe(pageSize);
  readPage(dbFd, page, 0);
  const counter = (page.readUInt32BE(24) + 1) >>> 0;

  // -- 1. journal: every existing page that changes, including page 1 and truncated pages.
  const changed = new Set<number>(source.pgnos);
  changed.add(1);
  for (let p = pageCount + 1; p <= oldPages; p++) changed.add(p);
  const journaled = [...changed].filter((p) => p <= oldPages).sort((a, b) => a - b);
  const nonce = randomInt(1, 0xffffffff);
  const journalPath = `${dbPath}-journal`;
  const jfd = fs.openSync(journalPath, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o644);
  try {
    const header = Buffer.alloc(SECTOR_SIZE);
    MAGIC.copy(header, 0);
    header.writeUInt32BE(0, 8); // the record count is written once the records are durable
    header.writeUInt32BE(nonce, 12);
    header.writeUInt32BE(oldPages, 16);
    header.writeUInt32BE(SECTOR_SIZE, 20);
    header.writeUInt32BE(pageSize, 24);
    writeAll(jfd, header, header.length, 0);
    const recSize = pageSize + 8;
    const perBuf = Math.max(1, Math.floor(BUFFER_BYTES / recSize));
    const out = Buffer.allocUnsafe(perBuf * recSize);
    let fill = 0;
    let at = SECTOR_SIZE;
    for (const pgno of journaled) {
      const rec = out.subarray(fill * recSize, (fill + 1) * recSize);
      const data = rec.subarray(4, 4 + pageSize);
      readPage(dbFd, data, (pgno - 1) * pageSize);
      rec.writeUInt32BE(pgno, 0);
      rec.writeUInt32BE(journalChecksum(nonce, data), 4 + pageSize);
      if (++fill === perBuf) {
        writeAll(jfd, out, fill * recSize, at);
        at += fill * recSize;
        fill = 0;
      }
    }
    if (fill > 0) writeAll(jfd, out, fill * recSize, at);
    fs.fsyncSync(jfd);
    fsyncDirSync(path.dirname(dbPath)); // the new journal's directory entry, before any page is overwritten
    const count = Buffer.alloc(4);
    count.writeUInt32BE(journaled.length, 0);
    writeAll(jfd, count, 4, 8);
    fs.fsyncSync(jfd);
  } finally {
    fs.closeSync(jfd);
  }

  // -- 2. the new pages, in page order.
  let wrotePageOne = false;
  for (const pgno of [...source.pgnos].sort((a, b) => a - b)) {
    if (pgno > pageCount) continue; // freed by a later commit of the batch
    source.read(pgno, page);
    if (pgno === 1) {
      patchPageOne(page, counter, pageCount);
      wrotePageOne = true;
    }
    writeAll(dbFd, page, pageSize, (pgno - 1) * pageSize);
  }
  if (!wrotePageOne) {
    readPage(dbFd, page, 0);
    patchPageOne(page, counter, pageCount);
    writeAll(dbFd, page, pageSize, 0);
  }
  if (pageCount !== oldPages || oldSize !== oldPages * pageSize) fs.ftruncateSync(dbFd, pageCount * pageSize);
  beforeCommit?.();
  fs.fsyncSync(dbFd);

  // -- 3. commit.
  fs.unlinkSync(journalPath);
  fsyncDirSync(path.dirname(dbPath));
  return counter;
}

/**
 * Plays back `<db>-journal` into the database open as `dbFd` the way SQLite does with a hot
 * journal (records whose checksum fails end the playback), truncates the file to the journal's
 * initial page count, fsyncs and deletes the journal. For a batch that failed while the
 * EXCLUSIVE lock is still held, so that read-only readers (which cannot play a journal back)
 * never find one. Returns false when there is no journal.
 */
export function rollBackJournal(dbFd: number, dbPath: string): boolean {
  const journalPath = `${dbPath}-journal`;
  let jfd: number;
  try {
    jfd = fs.openSync(journalPath, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  try {
    const header = Buffer.alloc(28);
    if (readFullAtSync(jfd, header, 0, 28, 0) === 28 && header.subarray(0, 8).equals(MAGIC)) {
      const nRec = header.readUInt32BE(8);
      const nonce = header.readUInt32BE(12);
      const initialPages = header.readUInt32BE(16);
      const sector = header.readUInt32BE(20);
      const pageSize = header.readUInt32BE(24);
      const rec = Buffer.allocUnsafe(pageSize + 8);
      for (let i = 0; i < nRec; i++) {
        const n = readFullAtSync(jfd, rec, 0, rec.length, sector + i * rec.length);
        if (n < rec.length) break;
        const pgno = rec.readUInt32BE(0);
        const data = rec.subarray(4, 4 + pageSize);
        if (pgno === 0 || journalChecksum(nonce, data) !== rec.readUInt32BE(4 + pageSize)) break;
        if (pgno <= initialPages) writeAll(dbFd, data, pageSize, (pgno - 1) * pageSize);
      }
      if (nRec > 0) fs.ftruncateSync(dbFd, initialPages * pageSize);
      fs.fsyncSync(dbFd);
    }
  } finally {
    fs.closeSync(jfd);
  }
  fs.unlinkSync(journalPath);
  fsyncDirSync(path.dirname(dbPath));
  return true;
}
