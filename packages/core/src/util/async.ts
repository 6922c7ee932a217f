/** Resolves after `ms`, or rejects with the signal's reason when aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Exponential backoff with full jitter: attempt 0 → ~base, capped at `max`. */
export function backoffDelay(attempt: number, base = 250, max = 30_000): number {
  const exp = Math.min(max, base * 2 ** Math.min(attempt, 20));
  return Math.round(exp / 2 + Math.random() * (exp / 2));
}

/** A promise-based mutex: `run` executes callbacks one at a time, in call order. */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();
  #locked = false;

  get locked(): boolean {
    return this.#locked;
  }

  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const next = this.#tail.then(async () => {
      this.#locked = true;
      try {
        return await fn();
      } finally {
        this.#locked = false;
      }
    });
    this.#tail = next.catch(() => {});
    return next;
  }
}

/** A notification that can be awaited repeatedly: `wait()` resolves on the next `notify()`. */
export class Signal {
  #waiters: Array<() => void> = [];
  notify(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
  wait(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      let t: NodeJS.Timeout | undefined;
      const done = () => {
        if (t) clearTimeout(t);
        resolve();
      };
      this.#waiters.push(done);
      if (ms !== undefined) {
        // Referenced on purpose: a running replicator keeps the process alive until stop().
        t = setTimeout(() => {
          this.#waiters = this.#waiters.filter((f) => f !== done);
          resolve();
        }, ms);
      }
    });
  }
}
