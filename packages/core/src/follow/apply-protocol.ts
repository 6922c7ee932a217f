/** Messages between a follower and its apply worker (see apply-worker.ts). */

export type ToApplyWorker =
  | { readonly op: 'open'; readonly id: number; readonly dbPath: string; readonly fd: number; readonly lockTimeoutMs: number }
  | {
      readonly op: 'apply';
      readonly id: number;
      readonly pageSize: number;
      readonly pageCount: number;
      /** File holding the new pages; `offsets[i]` is where page `pgnos[i]` starts. */
      readonly spillPath: string;
      readonly pgnos: Uint32Array;
      readonly offsets: Float64Array;
    }
  /** Makes the database equal to `fromPath` (a restored copy): writes the pages that differ. */
  | { readonly op: 'swap'; readonly id: number; readonly pageSize: number; readonly fromPath: string }
  | { readonly op: 'close'; readonly id: number };

export type FromApplyWorker =
  | { readonly id: number; readonly ok: true; readonly pages?: number; readonly lockWaitMs?: number; readonly durationMs?: number }
  | { readonly id: number; readonly ok: false; readonly busy?: boolean; readonly message: string; readonly code?: string };
