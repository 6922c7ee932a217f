/**
 * A StoreBackdoor over a raw ssh2-sftp-client connection (not the client under test): the
 * conformance suite uses it to check what really landed on the server.
 */
import { posix } from 'node:path';
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import SftpClient from 'ssh2-sftp-client';
import type { StoreBackdoor } from '@walship/replica-client-tests';
import type { SshdServer } from './sshd.js';

function isNotFound(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 2 || code === 'ENOENT';
}

/** One raw SFTP connection shared by every backdoor of a test file. */
export class RawSftp {
  private constructor(readonly sftp: SftpClient) {}

  static async connect(server: SshdServer): Promise<RawSftp> {
    const sftp = new SftpClient('backdoor', { error: () => {}, end: () => {}, close: () => {} });
    await sftp.connect({
      host: '127.0.0.1',
      port: server.port,
      username: server.user,
      privateKey: await readFile(server.clientKeyPath),
      hostVerifier: () => true, // the test's own server on loopback
    });
    (sftp as unknown as { client: { setNoDelay(v: boolean): void } }).client.setNoDelay(true);
    return new RawSftp(sftp);
  }

  async end(): Promise<void> {
    await this.sftp.end();
  }

  backdoor(root: string): StoreBackdoor {
    const sftp = this.sftp;
    const abs = (key: string) => {
      if (key === '' || key.split('/').some((p) => p === '' || p === '.' || p === '..')) {
        throw new RangeError(`invalid store key: ${JSON.stringify(key)}`);
      }
      return posix.join(root, key);
    };
    const walk = async (dir: string, prefix: string, out: string[]): Promise<void> => {
      let entries: SftpClient.FileInfo[];
      try {
        entries = await sftp.list(dir);
      } catch (err) {
        if (isNotFound(err) && prefix === '') return;
        throw err;
      }
      for (const e of entries) {
        if (e.type === 'd') await walk(posix.join(dir, e.name), `${prefix}${e.name}/`, out);
        else out.push(prefix + e.name);
      }
    };
    const statOf = async (key: string): Promise<{ size: number; createdAt: Date } | undefined> => {
      try {
        const st = await sftp.stat(abs(key));
        return st.isFile ? { size: st.size, createdAt: new Date(st.modifyTime) } : undefined;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    };
    return {
      // SFTP (v3) file times are whole seconds.
      timeResolutionMs: 1000,
      statKey: statOf,
      async openKey(key) {
        if (!(await statOf(key))) return undefined;
        return sftp.createReadStream(abs(key)) as unknown as Readable;
      },
      async listKeys() {
        const out: string[] = [];
        await walk(root, '', out);
        return out;
      },
      async readKey(key) {
        try {
          return (await sftp.get(abs(key))) as Buffer;
        } catch (err) {
          if (isNotFound(err)) return undefined;
          throw err;
        }
      },
      async writeKey(key, body) {
        const path = abs(key);
        await sftp.mkdir(posix.dirname(path), true);
        await sftp.put(body, path);
      },
      async cleanup() {
        if (await sftp.exists(root)) await sftp.rmdir(root, true);
      },
    };
  }
}
