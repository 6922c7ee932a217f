/**
 * A replication position: a WAL `offset` (bytes, counting the 32-byte WAL header) within WAL
 * `index` of `generation`. Identical to Litestream v0.3's Pos.
 */
export interface Pos {
  readonly generation: string;
  readonly index: number;
  readonly offset: number;
}

export const ZERO_POS: Pos = Object.freeze({ generation: '', index: 0, offset: 0 });

export function isZeroPos(p: Pos): boolean {
  return p.generation === '' && p.index === 0 && p.offset === 0;
}

/** Order by generation (string), then index, then offset. */
export function comparePos(a: Pos, b: Pos): number {
  if (a.generation !== b.generation) return a.generation < b.generation ? -1 : 1;
  if (a.index !== b.index) return a.index - b.index;
  return a.offset - b.offset;
}

/** `<generation>/<index %08x>:<offset>` as Litestream logs it; empty for the zero position. */
export function formatPos(p: Pos): string {
  if (isZeroPos(p)) return '';
  return `${p.generation}/${p.index.toString(16).padStart(8, '0')}:${p.offset}`;
}
