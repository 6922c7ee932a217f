import fsSync from 'node:fs';
import os from 'node:os';

/** What walship reads of SQLite's wal-index (the `-shm` file): https://sqlite.org/walformat.html */
export interface WalIndexState {
  /** Frames in the WAL (the index header's `mxFrame`). */
  readonly mxFrame: number;
  /** Frames already copied into the database file (`nBackfill`). */
  readonly nBackfill: number;
}

const HDR_SIZE = 48;
const CKPT_INFO_OFFSET = 2 * HDR_SIZE;
const READ_SIZE = CKPT_INFO_OFFSET + 4;

/**
 * Reads `mxFrame` and `nBackfill` from the `-shm` file (SQLite keeps it in native byte order,
 * as two copies of the index header followed by the checkpoint info), through a descriptor the
 * caller keeps open for as long as SQLite connections are: closing any descriptor of the `-shm`
 * would drop the POSIX locks the process's connections hold on it (the WAL read marks).
 * Undefined when the file is short, or when the two header copies differ (a writer is
 * updating it).
 *
 * Why walship needs it: a read transaction begun while the WAL is fully copied into the
 * database (`nBackfill == mxFrame`) takes read mark 0, which does not stop another connection
 * from restarting the WAL. walship only moves its long-lived read lock when there are frames
 * not yet copied, so it always holds a real WAL read mark.
 */
export function readWalIndexSync(shmFd: number): WalIndexState | undefined {
  const b = Buffer.alloc(READ_SIZE);
  if (fsSync.readSync(shmFd, b, 0, READ_SIZE, 0) !== READ_SIZE) return undefined;
  if (!b.subarray(0, HDR_SIZE).equals(b.subarray(HDR_SIZE, 2 * HDR_SIZE))) return undefined;
  const le = os.endianness() === 'LE';
  const u32 = (o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  return { mxFrame: u32(16), nBackfill: u32(CKPT_INFO_OFFSET) };
}
