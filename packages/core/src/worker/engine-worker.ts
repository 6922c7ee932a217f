/**
 * The engine worker (worker_threads): runs every `Replicator` of the process — WAL scans and
 * checksums, spills, checkpoints, snapshot reads, LZ4 — off the application's thread. Replica
 * clients stay on the application's thread (see remote-client.ts); so do log sinks. Protocol:
 * protocol.ts.
 */
import { parentPort } from 'node:worker_threads';
import type { Logger, LogFields } from '../logger.js';
import { lz4Stage } from '../pipeline.js';
import { ReplicatorCore } from '../replicator.js';
import type { ReplicatorOptions } from '../options.js';
import { ClosedError } from '../errors.js';
import { type CallArgs, type CallReply, type CreateArgs, EVENT_NAMES, type EventNote, type LogNote } from './protocol.js';
import { RemoteReplicaClient } from './remote-client.js';
import { toWireError, Wire, type WireError } from './wire.js';

const wire = new Wire(parentPort!, 'worker');
const replicators = new Map<number, ReplicatorCore>();

function remoteLogger(id: number): Logger {
  const send = (level: LogNote['level']) => (message: string, fields?: LogFields) => {
    try {
      wire.note('log', { id, level, message, ...(fields ? { fields } : {}) } satisfies LogNote);
    } catch {
      // Fields that cannot be cloned: send them as text.
      wire.note('log', { id, level, message, fields: { fields: String(JSON.stringify(fields)) } } satisfies LogNote);
    }
  };
  return { debug: send('debug'), info: send('info'), warn: send('warn'), error: send('error') };
}

wire.handle('create', (raw) => {
  const a = raw as CreateArgs;
  const replicas = a.replicas.map((r) => ({
    ...r.options,
    client: new RemoteReplicaClient(wire, r.client, r.type, r.capabilities),
    stages: r.stages === 'lz4' ? [lz4Stage] : [],
  }));
  const options = { ...a.options, replicas, ...(a.log ? { logger: remoteLogger(a.id) } : {}) } as ReplicatorOptions;
  const rep = new ReplicatorCore(a.dbPath, options);
  for (const name of EVENT_NAMES) {
    rep.on(name, (payload: object) => {
      const plain: Record<string, unknown> = {};
      const errors: Record<string, WireError> = {};
      for (const [k, v] of Object.entries(payload)) {
        if (v instanceof Error) errors[k] = toWireError(v);
        else plain[k] = v;
      }
      wire.note('event', { id: a.id, name, payload: plain, errors, status: rep.status() } satisfies EventNote);
    });
  }
  replicators.set(a.id, rep);
  return null;
});

wire.handle('call', async (raw): Promise<CallReply> => {
  const { id, method, arg } = raw as CallArgs;
  const rep = replicators.get(id);
  if (!rep) throw new ClosedError();
  let value: unknown = null;
  switch (method) {
    case 'start':
      await rep.start();
      break;
    case 'sync':
      value = await rep.sync(arg?.timeout !== undefined ? { timeout: arg.timeout } : {});
      break;
    case 'stop':
      try {
        await rep.stop(arg ?? {});
      } finally {
        replicators.delete(id);
      }
      return { value, status: rep.status() };
    case 'checkpoint':
      value = await rep.checkpoint();
      break;
    case 'status':
      break;
  }
  return { value, status: rep.status() };
});

// Tests only: an engine worker that dies (an uncaught error, as a bug would throw).
wire.onNote('crash', () => {
  setImmediate(() => {
    throw new Error('engine worker crashed on purpose (test)');
  });
});
