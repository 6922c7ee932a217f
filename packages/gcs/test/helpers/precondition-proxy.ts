import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback proxy in front of the Firebase Storage emulator that enforces what the emulator
 * ignores: `ifGenerationMatch` on uploads (0 = the object must not exist, N = its generation
 * must be N), answering 412 as GCS does. Conditional uploads are checked and forwarded one at a
 * time, so a check and its write are atomic with respect to each other. Everything else passes
 * through. This checks the client's side of the contract — the precondition it sends and how it
 * reads a 412 — not GCS itself.
 */
export interface PreconditionProxy {
  readonly endpoint: string;
  /** Conditional uploads seen, and how many were refused with 412. */
  readonly stats: { conditional: number; refused: number };
  close(): Promise<void>;
}

export async function startPreconditionProxy(target: string): Promise<PreconditionProxy> {
  const t = new URL(target);
  const stats = { conditional: 0, refused: 0 };
  let queue: Promise<unknown> = Promise.resolve();

  const forward = (req: IncomingMessage, res: ServerResponse, body?: Buffer): Promise<void> =>
    new Promise((resolve) => {
      const up = request(
        { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: t.host } },
        (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
          upRes.on('end', resolve);
          upRes.on('error', resolve);
        },
      );
      up.on('error', () => {
        res.destroy();
        resolve();
      });
      if (body) up.end(body);
      else req.pipe(up);
    });

  const currentGeneration = (bucket: string, name: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const r = request(
        {
          host: t.hostname,
          port: t.port,
          method: 'GET',
          path: `/storage/v1/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(name)}`,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            if (res.statusCode === 404) return resolve('0');
            try {
              resolve(String((JSON.parse(Buffer.concat(chunks).toString()) as { generation?: unknown }).generation ?? '0'));
            } catch (err) {
              reject(err);
            }
          });
        },
      );
      r.on('error', reject);
      r.end();
    });

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const want = url.searchParams.get('ifGenerationMatch');
    const m = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(url.pathname);
    const name = url.searchParams.get('name');
    if (want === null || !m || name === null || req.method !== 'POST') {
      void forward(req, res);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const run = async () => {
        stats.conditional++;
        const have = await currentGeneration(decodeURIComponent(m[1]!), name);
        if (have !== want) {
          stats.refused++;
          const err = JSON.stringify({
            error: {
              code: 412,
              message: 'At least one of the pre-conditions you specified did not hold.',
              errors: [{ reason: 'conditionNotMet' }],
            },
          });
          res.writeHead(412, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(err) });
          res.end(err);
          return;
        }
        await forward(req, res, body);
      };
      queue = queue.then(run, run).catch(() => res.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    endpoint,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
