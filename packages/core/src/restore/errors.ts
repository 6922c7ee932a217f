import { WalshipError } from '../errors.js';
import { formatPos } from '../pos.js';
import type { DamageReport } from './types.js';

/** Stable codes of {@link RestoreError}. */
export type RestoreErrorCode =
  /** No generation or snapshot matches the options (`no matching backups found`). */
  | 'WALSHIP_RESTORE_NO_BACKUPS'
  /** The output (or its `-wal`/`-journal`) exists and `overwrite` is not set. */
  | 'WALSHIP_RESTORE_OUTPUT_EXISTS'
  /** A snapshot, WAL index or segment is missing or corrupt; `damage` says what and how far a restore can get. */
  | 'WALSHIP_RESTORE_DAMAGED'
  /** The restored database failed `PRAGMA integrity_check` / `quick_check`. */
  | 'WALSHIP_RESTORE_VERIFY_FAILED'
  /** Invalid options (e.g. `index` together with `timestamp`, unknown replica name). */
  | 'WALSHIP_RESTORE_INVALID';

/**
 * Restore cannot proceed. `code` says why (see {@link RestoreErrorCode}); for
 * `WALSHIP_RESTORE_DAMAGED`, `damage` carries the exact location and the latest restorable
 * point, and the message says how to restore up to it.
 */
export class RestoreError extends WalshipError {
  declare readonly code: RestoreErrorCode;
  /** Set for `WALSHIP_RESTORE_DAMAGED`. */
  readonly damage?: DamageReport;

  constructor(code: RestoreErrorCode, message: string, options?: { cause?: unknown; damage?: DamageReport }) {
    super(code, message, options);
    if (options?.damage) this.damage = options.damage;
  }
}

/** `2024-01-02T03:04:05.000Z`, or `unknown time`. */
function iso(d: Date | undefined): string {
  return d && !Number.isNaN(d.getTime()) ? d.toISOString() : 'unknown time';
}

/** One-line description of a damage report, ending with what the user can do. */
export function describeDamage(d: DamageReport, partialRequested: boolean): string {
  const where = `${d.generation}/${d.index.toString(16).padStart(8, '0')}:${d.offset}`;
  const obj = d.object ? ` (${d.object})` : '';
  let msg = `replica "${d.replicaName}" is damaged: ${d.kind} at ${where}${obj}: ${d.detail}`;
  if (d.restorable) {
    const p = d.restorable;
    msg += `; latest restorable point is ${formatPos(p.pos)} (${iso(p.time)}, snapshot ${p.snapshotIndex.toString(16).padStart(8, '0')})`;
    if (!partialRequested) msg += '; restore up to it with partial: true';
  } else {
    msg += '; nothing in this generation can be restored up to the damage';
  }
  return msg;
}
