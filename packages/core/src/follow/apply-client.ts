import type { Worker } from 'node:worker_threads';
import { spawnWorker } from '../util/spawn-worker.js';
import type { FromApplyWorker, ToApplyWorker } from './apply-protocol.js';

type Request = ToApplyWorker extends infer T ? (T extends { id: number } ? Omit<T, 'id'> : never) : never;
type Ok = Extract<FromApplyWorker, { ok: true }>;

/** The apply worker failed a request; `busy` when readers held the database past the lock timeout. */
export class ApplyFailed extends Error {
  constructor(
    message: string,
    readonly busy: boolean,
    readonly sqliteCode?: string,
  ) {
    super(message);
    this.name = 'ApplyFailed';
  }
}

/** The main-thread end of a follower's apply worker: one request at a time, answered in order. */
export class ApplyWorkerClient {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (m: Ok) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #dead: Error | undefined;

  constructor() {
    this.#worker = spawnWorker('./apply-worker', import.meta.url);
    this.#worker.unref();
    this.#worker.on('message', (m: FromApplyWorker) => {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.ok) p.resolve(m);
      else p.reject(new ApplyFailed(m.message, m.busy === true, m.code));
    });
    const fail = (err: Error) => {
      this.#dead ??= err;
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`the follower's apply worker exited (code ${code})`)));
  }

  /** Why the worker is gone (it exited or failed), or undefined while it runs. */
  get dead(): Error | undefined {
    return this.#dead;
  }

  request(req: Request, transfer: ArrayBuffer[] = []): Promise<Ok> {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#nextId++;
    return new Promise<Ok>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...req, id }, transfer);
    });
  }

  /** Closes the worker's SQLite connection and ends the worker. */
  async close(): Promise<void> {
    try {
      if (!this.#dead) await this.request({ op: 'close' });
    } finally {
      await this.#worker.terminate();
    }
  }
}
