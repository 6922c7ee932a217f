// s3rver 3.7.1 on 127.0.0.1 (as packages/s3/test/helpers/servers.ts starts it) behind a tiny
// counting HTTP proxy, so the benchmark sees every storage request that reaches the server.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ROOT_DIR } from './common.js';

export interface S3Bench {
  endpoint: string; // the proxy
  bucket: string;
  requests: number;
  byMethod: Record<string, number>;
  /** requests by the first path component under the bucket (each replicator gets its own prefix) */
  byPrefix: Record<string, number>;
  stop(): Promise<void>;
}

export async function startS3(bucket = 'bench'): Promise<S3Bench> {
  const require = createRequire(join(ROOT_DIR, 'package.json'));
  const bin = join(dirname(require.resolve('s3rver/package.json')), 'bin', 's3rver.js');
  const dir = mkdtempSync(join(tmpdir(), 'walship-bench-s3rver-'));
  const child: ChildProcess = spawn(
    process.execPath,
    ['--openssl-legacy-provider', bin, '-d', dir, '-a', '127.0.0.1', '-p', '0', '--silent', '--configure-bucket', bucket],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', kill);
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`s3rver did not start: ${out}`)), 15_000);
    const on = (c: Buffer): void => {
      out += c.toString();
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`s3rver exited ${code}: ${out}`));
    });
  });
  child.stdout!.resume();
  child.stderr!.resume();

  const state = { requests: 0, byMethod: {} as Record<string, number>, byPrefix: {} as Record<string, number> };
  const agent = new http.Agent({ keepAlive: true });
  const proxy = http.createServer((req, res) => {
    state.requests++;
    state.byMethod[req.method!] = (state.byMethod[req.method!] ?? 0) + 1;
    // path style: /<bucket>/<prefix>/…, or /<bucket>?list-type=2&prefix=<prefix>/… for listings
    const u = new URL(req.url ?? '/', 'http://x');
    const parts = u.pathname.split('/');
    const prefix = (parts[2] || (u.searchParams.get('prefix') ?? '').split('/')[0] || '(bucket)').replace(/^%2F/i, '');
    state.byPrefix[prefix] = (state.byPrefix[prefix] ?? 0) + 1;
    const up = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers, agent }, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    });
    up.on('error', (e) => {
      res.writeHead(502);
      res.end(String(e));
    });
    req.pipe(up);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const proxyPort = (proxy.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${proxyPort}`,
    bucket,
    get requests() {
      return state.requests;
    },
    get byMethod() {
      return { ...state.byMethod };
    },
    get byPrefix() {
      return { ...state.byPrefix };
    },
    async stop() {
      proxy.closeAllConnections?.();
      await new Promise<void>((r) => proxy.close(() => r()));
      agent.destroy();
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      kill();
      process.removeListener('exit', kill);
    },
  };
}
