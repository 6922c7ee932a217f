import { CorruptDataError } from '../errors.js';
import type { Checksum } from '../wal/checksum.js';
import { parseWalHeader, verifyFrame, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE, type WalHeader } from '../wal/format.js';

/** Where an applier puts pages: the restore's {@link PageStore}, or a follower's batch. */
export interface PageSink {
  /** Pages staged for the current transaction. */
  readonly pendingPages: number;
  /** A slot to copy `pgno`'s page into, or undefined to call {@link spill} instead. */
  pendingSlot(pgno: number): [Buffer, number] | undefined;
  /** Stages a page that got no slot (`page` is the caller's copy). */
  spill(pgno: number, page: Uint8Array, offset: number): Promise<void>;
  /** Commits the staged transaction; the database has `dbPages` pages after it. */
  commit(dbPages: number): Promise<void> | undefined;
}

/** Where an applier stands at a frame boundary: enough to continue the index in a new applier. */
export interface WalChain {
  readonly header: WalHeader;
  /** Cumulative checksum of the frame that ends at `offset` (the header's before the first frame). */
  readonly prev: Checksum;
  /** Index offset of the next frame. */
  readonly offset: number;
}

/** Invalid WAL data found while applying; `offset` is within the (uncompressed) WAL index. */
export class WalDamage extends Error {
  constructor(
    readonly offset: number,
    readonly detail: string,
  ) {
    super(detail);
    this.name = 'WalDamage';
  }
}

/** A commit that has been applied: the index offset just after its commit frame. */
export interface AppliedCommit {
  readonly offset: number;
  /** Creation time of the segment the commit frame completed in. */
  readonly time: Date;
}

/**
 * Streams one WAL index (the concatenation of its segments' decoded bytes) into a
 * {@link PageStore}: verifies the header (magic, checksum, page size), then every frame's
 * salts and cumulative checksum (`verifyFrame`), stages each transaction's pages and commits
 * them on the commit frame. Throws {@link WalDamage} at the first invalid byte; everything
 * committed before it stays applied.
 */
export class WalIndexApplier {
  /** Decoded bytes consumed so far (= index offset of the next byte). */
  consumed = 0;
  /** Latest applied commit in this index. */
  lastCommit: AppliedCommit | undefined;
  /** Frames seen (committed or not). */
  frames = 0;
  /** Creation time of the segment currently being fed (for {@link lastCommit}). */
  segmentTime: Date = new Date(0);
  /**
   * Frames starting in [trustFrom, trustTo) were already verified against their predecessor's
   * stored checksum (by a decode worker's SegmentVerifier): only their salts are checked here
   * and the running checksum takes their stored value. Everything else is verified here.
   */
  private trustFrom = Infinity;
  private trustTo = Infinity;

  private header: WalHeader | undefined;
  private prev: Checksum = { s0: 0, s1: 0 };
  private readonly frameSize: number;
  /** Aligned assembly buffer for the header and for frames split across chunks or unaligned. */
  private readonly carry: Buffer;
  private carryLen = 0;
  /** Index offset of the frame being assembled / processed. */
  private frameStart = WAL_HEADER_SIZE;

  constructor(
    private readonly store: PageSink,
    private readonly pageSize: number,
    private readonly onCommit?: (c: AppliedCommit) => void,
  ) {
    this.frameSize = WAL_FRAME_HEADER_SIZE + pageSize;
    this.carry = Buffer.allocUnsafeSlow(this.frameSize);
  }

  /**
   * An applier that continues an index where `chain` stands (its header and checksum chain
   * already verified up to `chain.offset`): the next byte fed is the frame at `chain.offset`.
   */
  static resume(store: PageSink, pageSize: number, chain: WalChain, onCommit?: (c: AppliedCommit) => void): WalIndexApplier {
    const a = new WalIndexApplier(store, pageSize, onCommit);
    a.header = chain.header;
    a.prev = chain.prev;
    a.consumed = chain.offset;
    a.frameStart = chain.offset;
    return a;
  }

  /** Where the chain stands, or undefined before the header or inside a frame. */
  chain(): WalChain | undefined {
    if (!this.header || this.carryLen > 0) return undefined;
    return { header: this.header, prev: { ...this.prev }, offset: this.consumed };
  }

  /** Trust frames from `from` on (until {@link limitTrust}); `Infinity` trusts nothing. */
  setTrust(from: number): void {
    this.trustFrom = from;
    this.trustTo = Infinity;
  }

  /** Stops trusting frames at and after `offset`. */
  limitTrust(offset: number): void {
    if (offset < this.trustTo) this.trustTo = offset;
  }

  /** Checksum byte order of this index (known once the header is read). */
  get bigEndian(): boolean | undefined {
    return this.header?.bigEndian;
  }

  /** Feeds the next decoded bytes of the index. */
  async write(chunk: Buffer): Promise<void> {
    let pos = 0;
    const len = chunk.length;
    if (!this.header) {
      const need = WAL_HEADER_SIZE - this.carryLen;
      const n = Math.min(need, len);
      chunk.copy(this.carry, this.carryLen, 0, n);
      this.carryLen += n;
      pos = n;
      this.consumed += n;
      if (this.carryLen < WAL_HEADER_SIZE) return;
      this.readHeader();
      this.carryLen = 0;
    }
    const fs = this.frameSize;
    while (pos < len) {
      if (this.carryLen > 0 || len - pos < fs || (chunk.byteOffset + pos) % 4 !== 0) {
        const n = Math.min(fs - this.carryLen, len - pos);
        chunk.copy(this.carry, this.carryLen, pos, pos + n);
        this.carryLen += n;
        pos += n;
        this.consumed += n;
        if (this.carryLen < fs) continue;
        this.carryLen = 0;
        const p = this.frame(this.carry, 0);
        if (p !== undefined) await p;
      } else {
        this.consumed += fs;
        const p = this.frame(chunk, pos);
        pos += fs;
        if (p !== undefined) await p;
      }
    }
  }

  private readHeader(): void {
    let h: WalHeader;
    try {
      h = parseWalHeader(this.carry.subarray(0, WAL_HEADER_SIZE));
    } catch (err) {
      throw new WalDamage(0, err instanceof CorruptDataError ? err.message : String(err));
    }
    if (h.version !== 3007000) throw new WalDamage(0, `unsupported wal format version ${h.version}`);
    if (h.pageSize !== this.pageSize) {
      throw new WalDamage(0, `wal page size ${h.pageSize} does not match the database page size ${this.pageSize}`);
    }
    this.header = h;
    this.prev = h.checksum;
  }

  /** Verifies and stages one complete frame at `buf[at]`. Returns a promise only when it had to wait for I/O. */
  private frame(buf: Buffer, at: number): Promise<void> | undefined {
    const h = this.header!;
    const offset = this.frameStart;
    const salt1 = buf.readUInt32BE(at + 8);
    const salt2 = buf.readUInt32BE(at + 12);
    if (salt1 !== h.salt1 || salt2 !== h.salt2) {
      throw new WalDamage(
        offset,
        `frame at offset ${offset} has salts (${hex(salt1)},${hex(salt2)}), the wal header has (${hex(h.salt1)},${hex(h.salt2)})`,
      );
    }
    let c: Checksum | undefined;
    if (offset >= this.trustFrom && offset < this.trustTo) {
      c = { s0: buf.readUInt32BE(at + 16), s1: buf.readUInt32BE(at + 20) };
    } else {
      c = verifyFrame(buf, at, this.pageSize, h, this.prev);
      if (!c) throw new WalDamage(offset, `frame at offset ${offset} breaks the wal checksum chain`);
    }
    const pgno = buf.readUInt32BE(at);
    const commit = buf.readUInt32BE(at + 4);
    if (pgno === 0) throw new WalDamage(offset, `frame at offset ${offset} has page number 0`);
    this.prev = c;
    this.frames++;
    this.frameStart += this.frameSize;
    const pageAt = at + WAL_FRAME_HEADER_SIZE;
    const slot = this.store.pendingSlot(pgno);
    if (slot) {
      buf.copy(slot[0], slot[1], pageAt, pageAt + this.pageSize);
      return commit !== 0 ? this.commit(commit) : undefined;
    }
    // Transaction larger than the in-memory share: stage on disk.
    const copy = Buffer.from(buf.subarray(pageAt, pageAt + this.pageSize));
    return this.store.spill(pgno, copy, 0).then(() => (commit !== 0 ? this.commit(commit) : undefined));
  }

  private commit(dbPages: number): Promise<void> | undefined {
    const c: AppliedCommit = { offset: this.frameStart, time: this.segmentTime };
    const p = this.store.commit(dbPages);
    if (p !== undefined) {
      return p.then(() => {
        this.lastCommit = c;
        this.onCommit?.(c);
      });
    }
    this.lastCommit = c;
    this.onCommit?.(c);
    return undefined;
  }

  /**
   * Called after the last byte of the index. Throws WalDamage when the index ends inside the
   * header or a frame, or with frames after the last commit (segments always end on a commit,
   * so a trailing transaction means its rest is missing).
   */
  finish(): void {
    if (!this.header) {
      if (this.consumed === 0) throw new WalDamage(0, 'wal index is empty (no header)');
      throw new WalDamage(0, `wal index ends inside the header (${this.consumed} bytes)`);
    }
    if (this.carryLen > 0) {
      throw new WalDamage(
        this.frameStart,
        `wal index ends inside the frame at offset ${this.frameStart} (${this.carryLen} of ${this.frameSize} bytes)`,
      );
    }
    if (this.store.pendingPages > 0) {
      const from = this.lastCommit?.offset ?? WAL_HEADER_SIZE;
      throw new WalDamage(
        this.consumed,
        `wal index ends with an uncommitted transaction (frames from offset ${from} to ${this.consumed}); the segment after offset ${this.consumed} is missing`,
      );
    }
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}
