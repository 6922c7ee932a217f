import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback HTTP proxy in front of the real emulator that answers the next N requests with
 * an error status instead of forwarding them. Everything else is passed through unchanged.
 */
export interface FaultProxy {
  readonly endpoint: string;
  /** Answer the next `n` requests with `status` (0 clears). */
  failNext(n: number, status: number): void;
  /** Requests answered with an injected failure so far. */
  readonly failed: number;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const t = new URL(target);
  let remaining = 0;
  let status = 503;
  let failed = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (remaining > 0) {
      remaining--;
      failed++;
      req.resume();
      req.on('end', () => {
        const body = JSON.stringify({
          error: { code: status, message: `injected ${status}`, errors: [{ message: `injected ${status}`, reason: 'injected' }] },
        });
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
      return;
    }
    const up = request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: t.host } },
      (upRes) => {
        // Rewrite absolute upload URLs (resumable session Location) back through the proxy.
        const headers = { ...upRes.headers };
        if (typeof headers.location === 'string') headers.location = headers.location.replace(target, endpoint);
        res.writeHead(upRes.statusCode ?? 502, headers);
        upRes.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    endpoint,
    failNext(n, s) {
      remaining = n;
      status = s;
    },
    get failed() {
      return failed;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
