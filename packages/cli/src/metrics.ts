import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type DirectoryReplicator, errorMessage, type Replicator, type ReplicaStatus, type ReplicatorStatus } from '@walship/core';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { CliError } from './errors.js';
import { scrubString } from './logger.js';

/** Event-loop lag sampling period of the default Node.js metrics (prom-client's default is 10 ms). */
const EVENT_LOOP_SAMPLE_MS = 100;
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

interface Watched {
  readonly db: string;
  readonly replicator: Replicator;
  /** Replica name → type, for the operation metric's replica_type label. */
  readonly replicaTypes: ReadonlyMap<string, string>;
}

/**
 * walship's Prometheus metrics, on their own prom-client Registry (never the global one):
 * counters fed by Replicator events, gauges read from `status()` at scrape time.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly #watched: Watched[] = [];
  readonly #directories: Array<{ dir: string; directory: DirectoryReplicator }> = [];

  readonly syncTotal: Counter<'db'>;
  readonly syncErrors: Counter<'db'>;
  readonly syncSeconds: Histogram<'db'>;
  readonly checkpointTotal: Counter<'db' | 'mode'>;
  readonly checkpointErrors: Counter<'db' | 'mode'>;
  readonly checkpointSeconds: Histogram<'db' | 'mode'>;
  readonly generationChanges: Counter<'db'>;
  readonly replicaSyncTotal: Counter<'db' | 'replica'>;
  readonly replicaSyncBytes: Counter<'db' | 'replica'>;
  readonly replicaSyncSeconds: Histogram<'db' | 'replica'>;
  readonly replicaErrors: Counter<'db' | 'replica'>;
  readonly replicaLeaseErrors: Counter<'db' | 'replica' | 'reason'>;
  readonly snapshotTotal: Counter<'db' | 'replica'>;
  readonly snapshotBytes: Counter<'db' | 'replica'>;
  readonly operationTotal: Counter<'db' | 'replica' | 'replica_type' | 'operation'>;
  readonly operationBytes: Counter<'db' | 'replica' | 'replica_type' | 'operation'>;
  readonly validationTotal: Counter<'db' | 'replica' | 'result'>;
  readonly validationOkTimestamp: Gauge<'db' | 'replica'>;
  readonly validationFailing: Gauge<'db' | 'replica'>;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    const watched = this.#watched;
    const statuses = () => {
      const out: { db: string; status: ReplicatorStatus }[] = [];
      for (const w of watched) {
        try {
          out.push({ db: w.db, status: w.replicator.status() });
        } catch {
          // Not started yet or already stopped: nothing to report.
        }
      }
      return out;
    };
    const dbGauge = (name: string, help: string, value: (s: ReplicatorStatus) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['db'],
        registers,
        collect() {
          this.reset();
          for (const { db, status } of statuses()) this.set({ db }, value(status));
        },
      });
    const replicaGauge = (name: string, help: string, value: (r: ReplicaStatus) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['db', 'replica'],
        registers,
        collect() {
          this.reset();
          for (const { db, status } of statuses()) for (const r of status.replicas) this.set({ db, replica: r.name }, value(r));
        },
      });
    dbGauge('walship_db_size_bytes', 'Size of the database file in bytes.', (s) => s.dbSizeBytes);
    dbGauge('walship_wal_size_bytes', 'Size of the database WAL file in bytes.', (s) => s.walSizeBytes);
    dbGauge('walship_wal_index', 'Current WAL index of the database (the shadow WAL index in Litestream terms).', (s) => s.pos.index);
    replicaGauge(
      'walship_replica_lag_seconds',
      'Seconds since the oldest transaction not yet durable on the replica was committed (0 when caught up).',
      (r) => r.lagMs / 1000,
    );
    replicaGauge('walship_replica_healthy', '1 while the replica is within its expected lag and has no pending error, else 0.', (r) =>
      r.healthy ? 1 : 0,
    );
    replicaGauge('walship_replica_wal_index', 'WAL index durable on the replica.', (r) => r.pos.index);
    replicaGauge('walship_replica_wal_offset', 'WAL offset durable on the replica.', (r) => r.pos.offset);
    this.syncTotal = new Counter({
      name: 'walship_sync_total',
      help: 'Sync cycles (WAL checked and copied) completed.',
      labelNames: ['db'],
      registers,
    });
    this.syncErrors = new Counter({ name: 'walship_sync_errors_total', help: 'Sync cycles that failed.', labelNames: ['db'], registers });
    this.syncSeconds = new Histogram({
      name: 'walship_sync_seconds',
      help: 'Duration of sync cycles in seconds.',
      labelNames: ['db'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.checkpointTotal = new Counter({
      name: 'walship_checkpoint_total',
      help: 'Checkpoints performed, by mode (PASSIVE, RESTART, TRUNCATE).',
      labelNames: ['db', 'mode'],
      registers,
    });
    this.checkpointErrors = new Counter({
      name: 'walship_checkpoint_errors_total',
      help: 'Checkpoints that failed, by mode.',
      labelNames: ['db', 'mode'],
      registers,
    });
    this.checkpointSeconds = new Histogram({
      name: 'walship_checkpoint_seconds',
      help: 'Duration of checkpoints in seconds, by mode.',
      labelNames: ['db', 'mode'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.generationChanges = new Counter({
      name: 'walship_generation_changes_total',
      help: 'New generations started.',
      labelNames: ['db'],
      registers,
    });
    this.replicaSyncTotal = new Counter({
      name: 'walship_replica_sync_total',
      help: 'WAL segments uploaded to the replica.',
      labelNames: ['db', 'replica'],
      registers,
    });
    this.replicaSyncBytes = new Counter({
      name: 'walship_replica_sync_bytes_total',
      help: 'Uncompressed WAL bytes uploaded to the replica.',
      labelNames: ['db', 'replica'],
      registers,
    });
    this.replicaSyncSeconds = new Histogram({
      name: 'walship_replica_sync_seconds',
      help: 'Duration of WAL segment uploads in seconds.',
      labelNames: ['db', 'replica'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.replicaErrors = new Counter({
      name: 'walship_replica_errors_total',
      help: 'Replica sync errors.',
      labelNames: ['db', 'replica'],
      registers,
    });
    this.replicaLeaseErrors = new Counter({
      name: 'walship_replica_lease_errors_total',
      help:
        'Replica errors because another walship owns the replica: reason "held" (its lease is live, so nothing is written; retried) ' +
        'or "lost" (it took the lease over; this walship writes nothing more to the replica until restarted).',
      labelNames: ['db', 'replica', 'reason'],
      registers,
    });
    this.snapshotTotal = new Counter({
      name: 'walship_snapshot_total',
      help: 'Snapshots written to the replica.',
      labelNames: ['db', 'replica'],
      registers,
    });
    this.snapshotBytes = new Counter({
      name: 'walship_snapshot_bytes_total',
      help: 'Stored bytes of snapshots written to the replica.',
      labelNames: ['db', 'replica'],
      registers,
    });
    this.operationTotal = new Counter({
      name: 'walship_replica_operation_total',
      help: 'Storage requests by operation (GET, PUT, DELETE, LIST).',
      labelNames: ['db', 'replica', 'replica_type', 'operation'],
      registers,
    });
    this.operationBytes = new Counter({
      name: 'walship_replica_operation_bytes_total',
      help: 'Payload bytes of storage requests by operation (GET and PUT).',
      labelNames: ['db', 'replica', 'replica_type', 'operation'],
      registers,
    });
    this.validationTotal = new Counter({
      name: 'walship_replica_validation_total',
      help: 'Replica validations (validation-interval) by result: ok, mismatch (the restored replica differs from the local database), skipped (nothing compared).',
      labelNames: ['db', 'replica', 'result'],
      registers,
    });
    this.validationOkTimestamp = new Gauge({
      name: 'walship_replica_validation_ok_timestamp_seconds',
      help: "Unix time of the replica's last validation that found it equal to the local database.",
      labelNames: ['db', 'replica'],
      registers,
    });
    this.validationFailing = new Gauge({
      name: 'walship_replica_validation_failing',
      help: '1 after a validation found a mismatch, until a later validation is ok; else 0.',
      labelNames: ['db', 'replica'],
      registers,
    });
    const directories = this.#directories;
    new Gauge({
      name: 'walship_directory_databases',
      help: 'Databases of a directory entry (dir:), by state: replicating, skipped (not SQLite) or failed (could not start).',
      labelNames: ['dir', 'state'],
      registers,
      collect() {
        this.reset();
        for (const { dir, directory } of directories) {
          const s = directory.status();
          this.set({ dir, state: 'replicating' }, s.databases.length);
          this.set({ dir, state: 'skipped' }, s.skipped.length);
          this.set({ dir, state: 'failed' }, s.failed.length);
        }
      },
    });
    // prom-client samples the event loop every 10 ms by default: 100 wake-ups a second, most
    // of walship's CPU at idle. Every 100 ms is enough for a lag histogram scraped every few seconds.
    if (options.defaultMetrics !== false)
      collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  }

  /** Subscribes to a replicator's events and reports its status at scrape time. */
  watch(db: string, replicator: Replicator, replicaTypes: ReadonlyMap<string, string>): void {
    this.#watched.push({ db, replicator, replicaTypes });
    replicator.on('sync', (e) => {
      this.syncTotal.inc({ db });
      this.syncSeconds.observe({ db }, e.durationMs / 1000);
    });
    replicator.on('sync-error', () => this.syncErrors.inc({ db }));
    replicator.on('checkpoint', (e) => {
      this.checkpointTotal.inc({ db, mode: e.mode });
      this.checkpointSeconds.observe({ db, mode: e.mode }, e.durationMs / 1000);
    });
    replicator.on('checkpoint-error', (e) => this.checkpointErrors.inc({ db, mode: e.mode }));
    replicator.on('generation', () => this.generationChanges.inc({ db }));
    replicator.on('replica-sync', (e) => {
      this.replicaSyncTotal.inc({ db, replica: e.replica });
      this.replicaSyncBytes.inc({ db, replica: e.replica }, e.bytes);
      this.replicaSyncSeconds.observe({ db, replica: e.replica }, e.durationMs / 1000);
    });
    replicator.on('replica-error', (e) => {
      this.replicaErrors.inc({ db, replica: e.replica });
      const code = (e.error as { code?: unknown } | undefined)?.code;
      if (code === 'WALSHIP_LEASE_HELD') this.replicaLeaseErrors.inc({ db, replica: e.replica, reason: 'held' });
      else if (code === 'WALSHIP_LEASE_LOST') this.replicaLeaseErrors.inc({ db, replica: e.replica, reason: 'lost' });
    });
    replicator.on('snapshot', (e) => {
      this.snapshotTotal.inc({ db, replica: e.replica });
      this.snapshotBytes.inc({ db, replica: e.replica }, e.sizeBytes);
    });
    replicator.on('validation', (e) => {
      this.validationTotal.inc({ db, replica: e.replica, result: e.result });
      if (e.result === 'ok') {
        this.validationOkTimestamp.set({ db, replica: e.replica }, Date.now() / 1000);
        this.validationFailing.set({ db, replica: e.replica }, 0);
      } else if (e.result === 'mismatch') this.validationFailing.set({ db, replica: e.replica }, 1);
    });
    replicator.on('operation', (e) => {
      const labels = { db, replica: e.replica, replica_type: e.replicaType ?? replicaTypes.get(e.replica) ?? '', operation: e.operation };
      this.operationTotal.inc(labels);
      this.operationBytes.inc(labels, Math.max(e.bytes, 0));
    });
  }

  /**
   * Stops reporting a database (one of a directory entry that was deleted): its status gauges at
   * once, and every counter and histogram series labelled with it, so tenants that come and go
   * do not grow the metrics for ever.
   */
  async unwatch(replicator: Replicator): Promise<void> {
    const i = this.#watched.findIndex((w) => w.replicator === replicator);
    if (i < 0) return;
    const db = this.#watched[i]!.db;
    this.#watched.splice(i, 1);
    const labelled = [
      this.syncTotal,
      this.syncErrors,
      this.syncSeconds,
      this.checkpointTotal,
      this.checkpointErrors,
      this.checkpointSeconds,
      this.generationChanges,
      this.replicaSyncTotal,
      this.replicaSyncBytes,
      this.replicaSyncSeconds,
      this.replicaErrors,
      this.replicaLeaseErrors,
      this.snapshotTotal,
      this.snapshotBytes,
      this.operationTotal,
      this.operationBytes,
      this.validationTotal,
      this.validationOkTimestamp,
      this.validationFailing,
    ] as Array<Counter<string> | Gauge<string> | Histogram<string>>;
    for (const metric of labelled) {
      const seen = new Set<string>();
      for (const v of (await metric.get()).values) {
        if (v.labels['db'] !== db) continue;
        const { le: _le, ...labels } = v.labels as Record<string, string | number>;
        const key = JSON.stringify(labels);
        if (seen.has(key)) continue;
        seen.add(key);
        metric.remove(labels as never);
      }
    }
  }

  /** Reports a directory entry's database counts (`walship_directory_databases`). */
  watchDirectory(dir: string, directory: DirectoryReplicator): void {
    this.#directories.push({ dir, directory });
  }

  /** Health of every watched replica: healthy only when every replica reports healthy. */
  health(): HealthReport {
    const dbs: HealthReport['dbs'] = [];
    const unhealthy: HealthReport['unhealthy'] = [];
    for (const w of this.#watched) {
      let replicas: HealthReport['dbs'][number]['replicas'] = [];
      try {
        const status = w.replicator.status();
        replicas = status.replicas.map((r) => ({
          name: r.name,
          type: r.type,
          healthy: r.healthy,
          lagSeconds: r.lagMs / 1000,
          ...(r.lastSyncAt ? { lastSyncAt: r.lastSyncAt.toISOString() } : {}),
          ...(r.lastError ? { lastError: scrubString(r.lastError) } : {}),
        }));
      } catch (err) {
        unhealthy.push({ db: w.db, replica: '', lagSeconds: 0, error: `status unavailable: ${scrubString(errorMessage(err))}` });
      }
      for (const r of replicas) {
        if (!r.healthy)
          unhealthy.push({ db: w.db, replica: r.name, lagSeconds: r.lagSeconds, ...(r.lastError ? { error: r.lastError } : {}) });
      }
      dbs.push({ path: w.db, replicas });
    }
    // A directory's databases that failed to start (locked by another walship, not WAL-able…)
    // are not replicated at all: unhealthy, until a retry starts them.
    for (const { directory } of this.#directories) {
      let failed: ReturnType<DirectoryReplicator['status']>['failed'] = [];
      try {
        failed = directory.status().failed;
      } catch {
        continue; // stopped
      }
      for (const f of failed) {
        const error = `not replicated: ${scrubString(errorMessage(f.error))}`;
        unhealthy.push({ db: f.path, replica: '', lagSeconds: 0, error });
        dbs.push({ path: f.path, replicas: [], error });
      }
    }
    return { status: unhealthy.length === 0 ? 'ok' : 'unhealthy', unhealthy, dbs };
  }
}

export interface HealthReport {
  status: 'ok' | 'unhealthy';
  unhealthy: { db: string; replica: string; lagSeconds: number; error?: string }[];
  dbs: {
    path: string;
    /** Set when the database is not replicated at all (a directory's database whose start failed). */
    error?: string;
    replicas: { name: string; type: string; healthy: boolean; lagSeconds: number; lastSyncAt?: string; lastError?: string }[];
  }[];
}

/**
 * Serves `/metrics` (Prometheus text format) and `/healthz` (200 while every replica is
 * healthy, else 503; JSON body either way) on `host:port`. Resolves once listening.
 * @throws CliError `cannot listen on <addr>: …` when the address cannot be bound
 */
export async function startMetricsServer(metrics: Metrics, host: string, port: number): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (body) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(req.method === 'HEAD' ? undefined : body);
        },
        (err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`cannot collect metrics: ${errorMessage(err)}\n`);
        },
      );
      return;
    }
    if (path === '/healthz' || path === '/health') {
      const report = metrics.health();
      res.writeHead(report.status === 'ok' ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : `${JSON.stringify(report)}\n`);
      return;
    }
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('walship: see /metrics and /healthz\n');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const why = err.code === 'EADDRINUSE' ? 'address already in use' : err.code === 'EACCES' ? 'permission denied' : errorMessage(err);
      reject(new CliError(`cannot listen on ${host || ''}:${port} for metrics: ${why}`));
    };
    server.once('error', onError);
    server.listen({ host: host || undefined, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const actual = (server.address() as AddressInfo).port;
  const shown = host === '' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
  return { server, url: `http://${shown}:${actual}/metrics` };
}
