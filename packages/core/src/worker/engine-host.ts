import type { Worker } from 'node:worker_threads';
import { EngineWorkerError } from '../errors.js';
import { spawnWorker } from '../util/spawn-worker.js';
import type { EventNote, LogNote } from './protocol.js';
import { serveClients, type ServedClient } from './remote-client.js';
import { Wire } from './wire.js';

/** What the host needs from each replicator it runs (`Replicator` in replicator-facade.ts). */
export interface HostMember {
  onEvent(note: EventNote): void;
  onLog(note: LogNote): void;
  /** The worker this member ran in is gone. */
  onWorkerLost(err: EngineWorkerError): void;
}

/** One running engine worker and the wire to it. */
export interface EngineWorker {
  readonly wire: Wire;
  readonly worker: Worker;
}

/**
 * The process's one engine worker, shared by every `Replicator` (a worker costs an isolate,
 * ~50 MB; thousands of databases share one). Started on first use; referenced (keeping the
 * process alive) while any replicator is registered; replaced by a fresh one when it dies.
 */
export class EngineHost {
  static #shared: EngineHost | undefined;

  /** The process-wide host. */
  static shared(): EngineHost {
    EngineHost.#shared ??= new EngineHost();
    return EngineHost.#shared;
  }

  #current: EngineWorker | undefined;
  #nextId = 1;
  readonly #members = new Map<number, HostMember>();
  readonly #clients = new Map<number, ServedClient>();

  /** Registers a replicator and its clients; returns its id and its clients' ids. */
  register(member: HostMember, clients: readonly ServedClient[]): { id: number; clientIds: number[] } {
    const id = this.#nextId++;
    this.#members.set(id, member);
    const clientIds = clients.map((c) => {
      const cid = this.#nextId++;
      this.#clients.set(cid, c);
      return cid;
    });
    this.#updateRef();
    return { id, clientIds };
  }

  /** The engine worker, started if none runs. */
  worker(): EngineWorker {
    if (this.#current) return this.#current;
    const worker = spawnWorker('./engine-worker', import.meta.url, { name: 'walship-engine' });
    const wire = new Wire(worker, 'app');
    const current: EngineWorker = { wire, worker };
    this.#current = current;
    serveClients(wire, (cid) => this.#clients.get(cid));
    wire.onNote('event', (raw) => {
      const note = raw as EventNote;
      this.#members.get(note.id)?.onEvent(note);
    });
    wire.onNote('log', (raw) => {
      const note = raw as LogNote;
      this.#members.get(note.id)?.onLog(note);
    });
    let failure: unknown;
    worker.on('error', (err) => {
      failure = err;
    });
    worker.on('exit', (code) => {
      if (this.#current === current) this.#current = undefined;
      const why = failure !== undefined ? String((failure as Error).message ?? failure) : `exit code ${code}`;
      const err = new EngineWorkerError(`walship's engine worker stopped unexpectedly (${why})`, { cause: failure });
      wire.close(err);
      for (const m of [...this.#members.values()]) m.onWorkerLost(err);
    });
    this.#updateRef();
    return current;
  }

  /** Forgets a replicator that stopped for good (its clients too). */
  unregister(id: number, clientIds: readonly number[]): void {
    this.#members.delete(id);
    for (const c of clientIds) this.#clients.delete(c);
    this.#updateRef();
  }

  #updateRef(): void {
    const w = this.#current?.worker;
    if (!w) return;
    // Referenced while any replicator is registered (starting, running or stopping).
    if (this.#members.size > 0) w.ref();
    else w.unref();
  }
}
