import type { StoreBackdoor } from './types.js';

// Written out independently of @walship/core's naming helpers on purpose: the suite checks
// the client (which uses those helpers) against Litestream's layout, not against itself.

/** Go's `%08x`: lowercase hex, zero-padded to at least 8 digits. */
function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/** Root-relative key of a snapshot in Litestream v0.3's layout. */
export function snapshotKey(generation: string, index: number): string {
  return `generations/${generation}/snapshots/${hex8(index)}.snapshot.lz4`;
}

/** Root-relative key of a WAL segment in Litestream v0.3's layout. */
export function walSegmentKey(pos: { generation: string; index: number; offset: number }): string {
  return `generations/${pos.generation}/wal/${hex8(pos.index)}_${hex8(pos.offset)}.wal.lz4`;
}

/** The store's keys, sorted. */
export async function sortedStoreKeys(store: StoreBackdoor): Promise<string[]> {
  return (await store.listKeys()).slice().sort();
}

/**
 * The store's keys as one sorted, readable line (for assertion messages), e.g.
 * `store holds 2 keys: generations/…/a, generations/…/b`. Never throws: a failing backdoor
 * is reported in the text.
 */
export async function describeStoreKeys(store: StoreBackdoor, max = 50): Promise<string> {
  let keys: string[];
  try {
    keys = await sortedStoreKeys(store);
  } catch (err) {
    return `store keys unavailable: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (keys.length === 0) return 'store is empty';
  const shown = keys.slice(0, max).join(', ');
  const more = keys.length > max ? `, … (${keys.length - max} more)` : '';
  return `store holds ${keys.length} key${keys.length === 1 ? '' : 's'}: ${shown}${more}`;
}
