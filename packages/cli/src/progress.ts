import { formatPos, type Pos, type RestoreProgress, type RestoreResult } from '@walship/core';
import { formatBytes } from './format.js';

/** Where `walship restore` reports its progress: a terminal line, plain lines, or JSON lines. */
export interface ProgressSink {
  update(p: RestoreProgress): void;
  /** The restore ended (successfully or not): complete the output. */
  finish(): void;
}

/** Rate and ETA of the current phase, measured from its first report. */
class PhaseClock {
  #phase: RestoreProgress['phase'] | undefined;
  #start = 0;

  /** Bytes per second and seconds left (undefined until there is a rate to go by). */
  measure(p: RestoreProgress, now: number): { rate: number; eta: number | undefined } {
    if (p.phase !== this.#phase) {
      this.#phase = p.phase;
      this.#start = now;
    }
    const seconds = (now - this.#start) / 1000;
    const rate = seconds > 0.05 ? p.bytesDone / seconds : 0;
    const left = p.bytesTotal - p.bytesDone;
    return { rate, eta: rate > 0 && p.bytesTotal > 0 ? Math.max(0, left / rate) : undefined };
  }
}

/** `1:05`, `12s`, `1:02:03`. */
export function formatEta(seconds: number): string {
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** The human text of one progress report: phase, bytes, percent, segments, rate, ETA. */
export function describeProgress(p: RestoreProgress, rate: number, eta: number | undefined): string {
  const parts = [p.phase, `${formatBytes(p.bytesDone)}${p.bytesTotal > 0 ? ` / ${formatBytes(p.bytesTotal)}` : ''}`];
  if (p.bytesTotal > 0) parts.push(`${Math.min(100, Math.floor((p.bytesDone / p.bytesTotal) * 100))}%`);
  if (p.segmentsTotal !== undefined) parts.push(`${p.segmentsDone ?? 0}/${p.segmentsTotal} segments`);
  if (rate > 0) parts.push(`${formatBytes(Math.round(rate))}/s`);
  if (eta !== undefined && p.bytesDone < p.bytesTotal) parts.push(`ETA ${formatEta(eta)}`);
  return parts.join('  ');
}

const isDone = (p: RestoreProgress) => p.bytesTotal > 0 && p.bytesDone >= p.bytesTotal;

/** Lets a report through every `everyMs`, and once as each phase ends. */
class PhaseThrottle {
  readonly #everyMs: number;
  #last = 0;
  #endedPhase: RestoreProgress['phase'] | undefined;

  constructor(everyMs: number) {
    this.#everyMs = everyMs;
  }

  due(p: RestoreProgress, now: number): boolean {
    const ended = isDone(p);
    if (ended ? this.#endedPhase === p.phase : now - this.#last < this.#everyMs) return false;
    if (ended) this.#endedPhase = p.phase;
    this.#last = now;
    return true;
  }
}

/** One `\r`-updated line on a terminal, at most 10 times a second. */
export class TerminalProgress implements ProgressSink {
  readonly #out: NodeJS.WritableStream;
  readonly #clock = new PhaseClock();
  #last = 0;
  #width = 0;
  #shown = false;

  constructor(out: NodeJS.WritableStream) {
    this.#out = out;
  }

  update(p: RestoreProgress): void {
    const now = Date.now();
    const { rate, eta } = this.#clock.measure(p, now);
    if (!isDone(p) && now - this.#last < 100) return;
    this.#last = now;
    const line = describeProgress(p, rate, eta);
    this.#out.write(`\r${line}${' '.repeat(Math.max(0, this.#width - line.length))}`);
    this.#width = line.length;
    this.#shown = true;
  }

  finish(): void {
    if (this.#shown) this.#out.write('\n');
    this.#shown = false;
  }
}

/** Plain lines (not a terminal, `--progress`): one every `everyMs`, and one as each phase ends. */
export class LineProgress implements ProgressSink {
  readonly #out: NodeJS.WritableStream;
  readonly #throttle: PhaseThrottle;
  readonly #clock = new PhaseClock();

  constructor(out: NodeJS.WritableStream, everyMs = 5000) {
    this.#out = out;
    this.#throttle = new PhaseThrottle(everyMs);
  }

  update(p: RestoreProgress): void {
    const now = Date.now();
    const { rate, eta } = this.#clock.measure(p, now);
    if (!this.#throttle.due(p, now)) return;
    this.#out.write(`restore progress: ${describeProgress(p, rate, eta)}\n`);
  }

  finish(): void {}
}

/**
 * `--json`: one JSON object per line on `out` — `{"type":"progress",…}` at most once a second
 * and as each phase ends, then `{"type":"result",…}` (see `result`).
 */
export class JsonProgress implements ProgressSink {
  readonly #out: NodeJS.WritableStream;
  readonly #throttle = new PhaseThrottle(1000);
  readonly #clock = new PhaseClock();

  constructor(out: NodeJS.WritableStream) {
    this.#out = out;
  }

  update(p: RestoreProgress): void {
    const now = Date.now();
    const { rate, eta } = this.#clock.measure(p, now);
    if (!this.#throttle.due(p, now)) return;
    this.#out.write(
      `${JSON.stringify({
        type: 'progress',
        ...p,
        bytesPerSecond: Math.round(rate),
        ...(eta !== undefined ? { etaSeconds: Math.round(eta * 10) / 10 } : {}),
      })}\n`,
    );
  }

  /** One follow event (`restore -f --json`): `{ type, ...fields }`, positions as `generation/index:offset`. */
  event(type: string, fields: Record<string, unknown>): void {
    const out: Record<string, unknown> = { type };
    for (const [k, v] of Object.entries(fields)) out[k] = isPos(v) ? formatPos(v) : v;
    this.#out.write(`${JSON.stringify(out)}\n`);
  }

  /** The final line: the restore's outcome (positions as `generation/index:offset`, index in hex). */
  result(r: RestoreResult): void {
    const pos = r.restoredTo ? formatPos(r.restoredTo) : undefined;
    this.#out.write(
      `${JSON.stringify({
        type: 'result',
        status: r.status,
        ...(r.replicaName !== undefined ? { replica: r.replicaName } : {}),
        ...(r.generation !== undefined ? { generation: r.generation } : {}),
        ...(r.snapshotIndex !== undefined ? { snapshotIndex: r.snapshotIndex } : {}),
        ...(pos ? { restoredTo: pos } : {}),
        ...(r.walBytes !== undefined ? { walBytes: r.walBytes } : {}),
        ...(r.durationMs !== undefined ? { durationMs: Math.round(r.durationMs) } : {}),
        ...(r.partial ? { partial: true } : {}),
        ...(r.skippedReplicas?.length ? { skippedReplicas: r.skippedReplicas } : {}),
      })}\n`,
    );
  }

  finish(): void {}
}

function isPos(v: unknown): v is Pos {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as Pos).generation === 'string' &&
    typeof (v as Pos).index === 'number' &&
    typeof (v as Pos).offset === 'number'
  );
}
