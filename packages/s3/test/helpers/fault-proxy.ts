// A fault-injecting HTTP proxy for the S3 fault suite (issue #13 §5). It listens on 127.0.0.1
// only, forwards to an S3 server on the loopback interface, and — while `faults` is on —
// injects one fault into a random share of the requests:
//
// - `503`                  answers 503 ServiceUnavailable itself; nothing reaches the server;
// - `reset-request-body`   reads part of a request body, then resets the connection (RST);
//                          nothing reaches the server;
// - `reset-response-body`  forwards, sends the head and part of the body, then resets (RST);
// - `truncated-response`   forwards, sends the response cut at a random byte (inside the head
//                          or the body), then closes the connection cleanly (FIN);
// - `lost-ack`             forwards a PUT/POST/DELETE, lets the server apply it (2xx), then
//                          resets the client's connection before any byte of the response;
// - `latency`              delays the request by `latencyMs` before forwarding it intact.
//
// `down()` closes the listener (new connections are refused: ECONNREFUSED) and cuts every open
// connection; `up()` listens again on the same port. Memory is bounded: bodies are streamed,
// never buffered. The random source is seeded, so a failing run can be replayed.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export const FAULT_KINDS = ['503', 'reset-request-body', 'reset-response-body', 'truncated-response', 'lost-ack', 'latency'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface FaultProxyOptions {
  /** The S3 server to forward to, e.g. `http://127.0.0.1:4568` (loopback only). */
  readonly upstream: string;
  /** Probability of each fault per request (default: see DEFAULT_RATES). */
  readonly rates?: Partial<Record<FaultKind, number>>;
  /** Added latency range in ms (default 150–900). */
  readonly latencyMs?: readonly [number, number];
  /** Seed of the random source (default: random). */
  readonly seed?: number;
}

export const DEFAULT_RATES: Readonly<Record<FaultKind, number>> = {
  '503': 0.07,
  // Only requests with a body (PUT, POST) can get these two: they are rarer, so likelier.
  'reset-request-body': 0.12,
  'reset-response-body': 0.07,
  'truncated-response': 0.06,
  'lost-ack': 0.12,
  latency: 0.08,
};

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade', 'te', 'trailer']);

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class FaultProxy {
  readonly seed: number;
  /** Faults actually injected, by kind. */
  readonly counts: Record<FaultKind, number> = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  /** Outages (`down()` calls). */
  outages = 0;
  /** Requests seen, and requests that reached the server. */
  requests = 0;
  forwarded = 0;
  /** Inject faults (true) or pass everything through (false). */
  faults = false;

  readonly #server: http.Server;
  readonly #upstream: URL;
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  readonly #sockets = new Set<Socket>();
  readonly #rates: Record<FaultKind, number>;
  readonly #latency: readonly [number, number];
  readonly #random: () => number;
  #port = 0;
  #down = false;

  private constructor(opts: FaultProxyOptions) {
    this.#upstream = new URL(opts.upstream);
    if (this.#upstream.protocol !== 'http:' || !LOOPBACK.has(this.#upstream.hostname)) {
      throw new Error(`fault proxy forwards to http on the loopback interface only, not ${opts.upstream}`);
    }
    this.#rates = { ...DEFAULT_RATES, ...opts.rates };
    this.#latency = opts.latencyMs ?? [150, 900];
    this.seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
    this.#random = prng(this.seed);
    this.#server = http.createServer({ keepAlive: true, requestTimeout: 60_000 }, (req, res) => this.#handle(req, res));
    this.#server.maxConnections = 128;
    this.#server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
      s.on('error', () => {});
    });
    this.#server.on('clientError', (_err, s) => s.destroy());
  }

  static async start(opts: FaultProxyOptions): Promise<FaultProxy> {
    const p = new FaultProxy(opts);
    await p.#listen(0);
    return p;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  get isDown(): boolean {
    return this.#down;
  }

  /** Stops accepting connections (clients get ECONNREFUSED) and cuts the open ones. */
  async down(): Promise<void> {
    if (this.#down) return;
    this.#down = true;
    this.outages++;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    this.#server.closeAllConnections();
    await closed;
  }

  /** Listens again on the same port. */
  async up(): Promise<void> {
    if (!this.#down) return;
    await this.#listen(this.#port);
    this.#down = false;
  }

  async close(): Promise<void> {
    this.faults = false;
    if (!this.#down) {
      const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      for (const s of this.#sockets) s.destroy();
      this.#server.closeAllConnections();
      await closed;
      this.#down = true;
    }
    this.#agent.destroy();
  }

  /** `kind=count` for every kind, and the outages. */
  summary(): string {
    return [...FAULT_KINDS.map((k) => `${k}=${this.counts[k]}`), `store-down=${this.outages}`].join(' ');
  }

  async #listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.#server.once('error', onError);
      this.#server.listen(port, '127.0.0.1', () => {
        this.#server.removeListener('error', onError);
        resolve();
      });
    });
    this.#port = (this.#server.address() as AddressInfo).port;
  }

  #pick(req: http.IncomingMessage): FaultKind | undefined {
    if (!this.faults) return undefined;
    const method = req.method ?? 'GET';
    const bodyLength = Number(req.headers['content-length'] ?? 0);
    const hasBody = bodyLength > 1;
    const mutating = method === 'PUT' || method === 'POST' || method === 'DELETE';
    const applicable: FaultKind[] = FAULT_KINDS.filter((k) => {
      if (k === 'reset-request-body') return hasBody;
      if (k === 'reset-response-body') return method === 'GET' || method === 'POST';
      if (k === 'lost-ack') return mutating;
      return true;
    });
    let r = this.#random();
    for (const k of applicable) {
      r -= this.#rates[k];
      if (r < 0) return k;
    }
    return undefined;
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.requests++;
    const kind = this.#pick(req);
    const socket = req.socket;
    req.on('error', () => {});
    res.on('error', () => {});
    switch (kind) {
      case '503': {
        this.counts['503']++;
        req.resume();
        const body =
          '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable</Code>' +
          '<Message>fault proxy: service unavailable</Message><RequestId>fault</RequestId></Error>';
        res.writeHead(503, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
        return;
      }
      case 'reset-request-body': {
        const length = Number(req.headers['content-length']);
        const cutAt = 1 + Math.floor(this.#random() * (length - 1));
        let seen = 0;
        let done = false;
        const cut = (): void => {
          if (done) return;
          done = true;
          this.counts['reset-request-body']++;
          socket.resetAndDestroy();
        };
        req.on('data', (c: Buffer) => {
          seen += c.length;
          if (seen >= cutAt) cut();
        });
        req.on('end', cut);
        return;
      }
      case 'latency': {
        this.counts.latency++;
        const [lo, hi] = this.#latency;
        req.pause();
        setTimeout(() => this.#forward(req, res, undefined), lo + this.#random() * (hi - lo));
        return;
      }
      default:
        this.#forward(req, res, kind);
    }
  }

  #forward(req: http.IncomingMessage, res: http.ServerResponse, kind: FaultKind | undefined): void {
    if (this.#down || req.socket.destroyed) {
      req.socket.destroy();
      return;
    }
    this.forwarded++;
    const socket = req.socket;
    const up = http.request({
      host: this.#upstream.hostname,
      port: this.#upstream.port,
      method: req.method,
      path: req.url,
      headers: req.headers, // host included: SigV4 signs it
      agent: this.#agent,
    });
    let upDone = false;
    up.on('error', () => socket.destroy());
    req.pipe(up);
    // The client went away first: stop the upstream request (never a finished, pooled one).
    socket.once('close', () => {
      if (!upDone) up.destroy();
    });
    up.on('response', (ur) => {
      ur.on('error', () => socket.destroy());
      ur.once('end', () => (upDone = true));
      const status = ur.statusCode ?? 502;
      if (kind === 'lost-ack') {
        // Let the server finish (the request is applied), then cut before the response.
        ur.resume();
        ur.once('end', () => {
          if (status < 300) this.counts['lost-ack']++;
          socket.resetAndDestroy();
        });
        return;
      }
      const length =
        req.method !== 'HEAD' && status !== 204 && status !== 304 && ur.headers['content-length'] !== undefined
          ? Number(ur.headers['content-length'])
          : undefined;
      if (kind === 'reset-response-body' && length !== undefined && length >= 2) {
        this.#cutResponse(socket, ur, this.#head(ur, status), 1 + Math.floor(this.#random() * (length - 1)), 'reset-response-body');
        return;
      }
      if (kind === 'truncated-response') {
        const head = this.#head(ur, status);
        // A cut inside the body needs a Content-Length (else it would be a valid response).
        const total = head.length + (length ?? 0);
        const at = 1 + Math.floor(this.#random() * (total - 1));
        this.#cutResponse(socket, ur, head, at - head.length, 'truncated-response', at < head.length ? at : undefined);
        return;
      }
      const headers: http.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(ur.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
      res.writeHead(status, ur.statusMessage, headers);
      ur.pipe(res);
    });
  }

  /** The raw response head (without hop-by-hop headers, so the body is sent as is). */
  #head(ur: http.IncomingMessage, status: number): Buffer {
    let s = `HTTP/1.1 ${status} ${ur.statusMessage ?? ''}\r\n`;
    for (let i = 0; i < ur.rawHeaders.length; i += 2) {
      if (!HOP_BY_HOP.has(ur.rawHeaders[i]!.toLowerCase())) s += `${ur.rawHeaders[i]}: ${ur.rawHeaders[i + 1]}\r\n`;
    }
    return Buffer.from(`${s}Connection: keep-alive\r\n\r\n`, 'latin1');
  }

  /**
   * Writes the head (or its first `headBytes`), then `bodyBytes` of the body, then resets
   * (`reset-response-body`) or closes cleanly (`truncated-response`). The response object is
   * never used: the socket is taken over.
   */
  #cutResponse(
    socket: Socket,
    ur: http.IncomingMessage,
    head: Buffer,
    bodyBytes: number,
    kind: 'reset-response-body' | 'truncated-response',
    headBytes?: number,
  ): void {
    let done = false;
    let flushed: Promise<void> = Promise.resolve();
    const write = (b: Buffer): void => {
      flushed = new Promise((resolve) => socket.write(b, () => resolve()));
    };
    const finish = (): void => {
      if (done) return;
      done = true;
      this.counts[kind]++;
      ur.destroy();
      // Reset only once the bytes sent so far are in the kernel (a reset drops unsent data).
      void flushed.then(() => {
        if (kind === 'reset-response-body') socket.resetAndDestroy();
        else {
          socket.end();
          setTimeout(() => socket.destroy(), 1000).unref();
        }
      });
    };
    if (headBytes !== undefined) {
      write(head.subarray(0, headBytes));
      finish();
      return;
    }
    write(head);
    let left = bodyBytes;
    if (left <= 0) {
      finish();
      return;
    }
    ur.on('data', (c: Buffer) => {
      if (done) return;
      if (c.length >= left) {
        write(c.subarray(0, left));
        finish();
      } else {
        left -= c.length;
        write(c);
      }
    });
    ur.once('end', finish);
  }
}
