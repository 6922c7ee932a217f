// Replica-side observation for the scale scenario, many databases at once, the same method as
// the lag scenario (bench/lib/replica-watch.ts: a segment's first-seen time, then the writers'
// markers decoded out of it after the run), made cheap enough for a hundred replicas:
//  - file replica: one inotify watch (fs.watch) per replica's generations/ and wal/ directory;
//    an event lists that replica at once (instead of polling 100 replicas every 25 ms), plus a
//    safety listing every second;
//  - S3 (s3rver): a recording HTTP proxy in front of the counting proxy: a segment is seen when
//    the server answered its PUT with 2xx (the moment the client's upload resolves), and its body
//    is kept in a mirror directory for the decoding after the run.
import { mkdirSync, readdirSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { now } from './common.js';
import { ReplicaWatcher, type Segment } from './replica-watch.js';

const SEG_RE = /^([0-9a-f]{8,16})_([0-9a-f]{8,16})\.wal\.lz4$/;

/** A file replica's segments, listed whenever inotify reports a change in its directories. */
export class FileSegWatch extends ReplicaWatcher {
  readonly #watchers = new Map<string, FSWatcher>();
  #timer: NodeJS.Timeout | undefined;
  eventsSeen = 0;

  constructor(root: string) {
    super(root, 0); // pollMs 0: listed on events (plus the 1 s safety listing)
  }

  override start(): this {
    this.#refresh();
    this.#timer = setInterval(() => this.#refresh(), 1000);
    return this;
  }

  override stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
  }

  #refresh(): void {
    this.poll();
    const gens = join(this.root, 'generations');
    this.#watch(gens, true);
    let names: string[] = [];
    try {
      names = readdirSync(gens);
    } catch {}
    for (const g of names) this.#watch(join(gens, g, 'wal'), false);
  }

  #watch(dir: string, isGenerations: boolean): void {
    if (this.#watchers.has(dir)) return;
    try {
      const w = watch(dir, { persistent: false }, () => {
        this.eventsSeen++;
        if (isGenerations) this.#refresh();
        else this.poll();
      });
      w.on('error', () => {
        w.close();
        this.#watchers.delete(dir);
      });
      this.#watchers.set(dir, w);
    } catch {
      // not there yet: the safety listing tries again
    }
  }
}

/** The objects a recorded S3 replica (one database's) received. */
interface RecordedDb {
  segs: Segment[];
  genSeen: Map<string, number>;
  snapshotAt?: number;
  walAt?: number;
}

/**
 * An HTTP proxy in front of an S3 endpoint that records, per database (`<prefix>/<relPath>/…`),
 * when each snapshot and WAL segment PUT was acknowledged (2xx), and keeps the segments' bytes.
 */
export class S3Recorder {
  readonly #dbs = new Map<string, RecordedDb>();
  readonly #agent = new http.Agent({ keepAlive: true });
  #server: http.Server | undefined;
  endpoint = '';
  requests = 0;
  puts = 0;
  lastPutAt = NaN;
  /** PUTs whose body was aws-chunked or multipart (not decodable here): should stay 0 */
  undecodable = 0;
  readonly #re: RegExp;

  constructor(
    readonly upstream: string,
    readonly bucket: string,
    readonly prefix: string,
    readonly mirror: string,
  ) {
    const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    this.#re = new RegExp(`^/${esc(bucket)}/${esc(prefix)}/(.+)/generations/([^/]+)/(wal|snapshots)/([^/]+)$`);
  }

  async start(): Promise<string> {
    const up = new URL(this.upstream);
    this.#server = http.createServer((req, res) => {
      this.requests++;
      const u = new URL(req.url ?? '/', 'http://x');
      const m = req.method === 'PUT' ? this.#re.exec(decodeURIComponent(u.pathname)) : null;
      const chunks: Buffer[] = [];
      let ended = false;
      if (m) {
        if (u.searchParams.has('uploadId') || String(req.headers['x-amz-content-sha256'] ?? '').startsWith('STREAMING-'))
          this.undecodable++;
        if (m[3] === 'wal') req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => void (ended = true));
      }
      const upReq = http.request(
        { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers, agent: this.#agent },
        (r) => {
          const t = now();
          res.writeHead(r.statusCode!, r.headers);
          r.pipe(res);
          // recorded after the answer is on its way, so the mirror's write delays no upload
          if (m && r.statusCode! >= 200 && r.statusCode! < 300) {
            const record = (): void => this.#record(m[1]!, m[2]!, m[3]!, m[4]!, Buffer.concat(chunks), t);
            if (ended) record();
            else req.once('end', record);
          }
        },
      );
      upReq.on('error', (e) => {
        res.writeHead(502);
        res.end(String(e));
      });
      req.pipe(upReq);
    });
    await new Promise<void>((r) => this.#server!.listen(0, '127.0.0.1', r));
    this.endpoint = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this.endpoint;
  }

  #record(rel: string, gen: string, kind: string, name: string, body: Buffer, t: number): void {
    this.puts++;
    this.lastPutAt = t;
    let d = this.#dbs.get(rel);
    if (!d) this.#dbs.set(rel, (d = { segs: [], genSeen: new Map() }));
    if (!d.genSeen.has(gen)) d.genSeen.set(gen, t);
    if (kind === 'snapshots') {
      d.snapshotAt ??= t;
      return;
    }
    const sm = SEG_RE.exec(name);
    if (!sm) return;
    d.walAt ??= t;
    const dir = join(this.mirror, rel, 'generations', gen, 'wal');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, name);
    writeFileSync(file, body);
    d.segs.push({ gen, index: parseInt(sm[1]!, 16), offset: parseInt(sm[2]!, 16), file, seenAt: t });
  }

  /** When the database's first snapshot and first WAL segment were acknowledged. */
  complete(rel: string): { snapshotAt?: number; walAt?: number } {
    const d = this.#dbs.get(rel);
    return { snapshotAt: d?.snapshotAt, walAt: d?.walAt };
  }

  segments(rel: string): Segment[] {
    const d = this.#dbs.get(rel);
    if (!d) return [];
    return [...d.segs].sort((a, b) => d.genSeen.get(a.gen)! - d.genSeen.get(b.gen)! || a.index - b.index || a.offset - b.offset);
  }

  generations(rel: string): number {
    return this.#dbs.get(rel)?.genSeen.size ?? 0;
  }

  async stop(): Promise<void> {
    this.#server?.closeAllConnections?.();
    await new Promise<void>((r) => (this.#server ? this.#server.close(() => r()) : r()));
    this.#agent.destroy();
  }
}

/** One database of an S3Recorder, as a ReplicaWatcher (for waitReplicaComplete / replicaLag). */
export class RecordedWatcher extends ReplicaWatcher {
  constructor(
    readonly rec: S3Recorder,
    readonly rel: string,
  ) {
    super(`s3:${rel}`, 0);
  }
  override start(): this {
    return this;
  }
  override stop(): void {}
  override poll(): void {}
  override segments(): Segment[] {
    return this.rec.segments(this.rel);
  }
  override get generations(): number {
    return this.rec.generations(this.rel);
  }
}

/**
 * Several databases' watchers as one, database after database, so replicaLag() decodes them in
 * one pass and returns one pooled distribution (the writers' sequence numbers increase from one
 * database to the next: bench/proc/scale-writers.ts).
 */
export class PooledWatcher extends ReplicaWatcher {
  constructor(readonly parts: ReplicaWatcher[]) {
    super('(pooled)', parts[0]?.intervalMs ?? 0);
  }
  override start(): this {
    return this;
  }
  override stop(): void {}
  override poll(): void {}
  override segments(): Segment[] {
    return this.parts.flatMap((p) => p.segments());
  }
  override get generations(): number {
    return this.parts.reduce((a, p) => a + p.generations, 0);
  }
}
