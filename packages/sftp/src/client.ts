import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackendError, InvalidArgumentError, NotFoundError, isWalshipError } from '@walship/core';
import {
  bodyChunkToBuffer,
  findDatabases,
  isGenerationName,
  joinKey,
  layout,
  leaseDirKey,
  normalizeSubPath,
  parseSnapshotFileName,
  parseWalSegmentFileName,
  readSequencedLease,
  writeSequencedLease,
} from '@walship/core/backend';
import type { Pos, ReplicaClient, ReplicaClientCapabilities, SnapshotInfo, StoredLease, WALSegmentInfo } from '@walship/core';
import type { LeaseDirectory } from '@walship/core/backend';
import SftpClient from 'ssh2-sftp-client';
import type { FileEntryWithStats, SFTPWrapper, Stats } from 'ssh2';
import {
  type KnownHostEntry,
  type PublicKey,
  blobKeyType,
  checkKnownHosts,
  fingerprint,
  hostKeyAlgorithmsFor,
  knownHostsName,
  knownKeyTypes,
  parseKnownHosts,
  parsePublicKey,
} from './host-key.js';

/** Options of {@link SftpReplicaClient}. */
export interface SftpReplicaClientOptions {
  /** Server host name or address, optionally with `:port` (`[v6addr]:port` for IPv6). */
  readonly host: string;
  /** Server port; overrides a port given in `host`. Default 22. */
  readonly port?: number;
  /** SSH user name. */
  readonly user: string;
  /** Password for password authentication. */
  readonly password?: string;
  /** Path of a private key file (OpenSSH or PEM format), read when connecting. */
  readonly keyPath?: string;
  /** Private key contents, as an alternative to `keyPath`. */
  readonly privateKey?: string | Buffer;
  /** Passphrase of an encrypted private key. */
  readonly keyPassphrase?: string;
  /**
   * Remote root directory. A leading `/` makes it absolute; otherwise it is relative to the
   * user's login directory. Default: the login directory.
   */
  readonly path?: string;
  /**
   * The server's public host key, as a line `<type> <base64>` (e.g. `ssh-ed25519 AAAA...`,
   * the contents of the server's `/etc/ssh/ssh_host_ed25519_key.pub`). When set, known_hosts
   * is not consulted.
   */
  readonly hostKey?: string;
  /** OpenSSH known_hosts file used to verify the host key. Default `~/.ssh/known_hosts`. */
  readonly knownHostsPath?: string;
  /** Skips host-key verification (a warning is emitted). Default false. */
  readonly insecureIgnoreHostKey?: boolean;
  /** Milliseconds allowed for TCP connect + SSH handshake + authentication. Default 30000. */
  readonly connectTimeout?: number;
  /** Operations in flight at once on the connection, 1–8. Default 8. */
  readonly maxConcurrency?: number;
  /** Times an operation is retried after a lost connection (with backoff). Default 5. */
  readonly maxRetries?: number;
  /** Receives one-line warnings (e.g. host key check disabled). Default: `process.emitWarning`. */
  readonly warn?: (message: string) => void;
}

/** One live SSH connection with its SFTP session. */
interface Connection {
  readonly client: SftpClient;
  readonly sftp: SFTPWrapper;
  dead: boolean;
}

/**
 * The SSH session of a client and of every client scoped from it (see
 * {@link SftpReplicaClient.scoped}): one connection, dialled lazily by whichever uses it first.
 */
interface Session {
  conn: Connection | undefined;
  dialing: Promise<Connection> | undefined;
  posixRenameSupported: boolean;
}

/** Options key (module-private) by which a scoped client receives its parent. */
const SCOPED_FROM = Symbol('walship.sftp.scopedFrom');
type InternalOptions = SftpReplicaClientOptions & { readonly [SCOPED_FROM]?: SftpReplicaClient };

/** Waiters for a free slot; bounds the operations in flight on the connection. */
class Semaphore {
  private active = 0;
  private readonly waiters: Array<() => void> = [];
  constructor(private readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiters.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.active--;
    }
  }
}

const SFTP_STATUS = { EOF: 1, NO_SUCH_FILE: 2, PERMISSION_DENIED: 3, FAILURE: 4, OP_UNSUPPORTED: 8 } as const;
const MAX_CONCURRENCY = 8;
const WRITES_IN_FLIGHT_PER_UPLOAD = 4;

/** SFTP status code carried by an ssh2 error, when the server answered with one. */
function sftpStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

function isNoSuchFile(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === SFTP_STATUS.NO_SUCH_FILE || code === 'ENOENT';
}

function msg(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.split('\n')[0] ?? m;
}

/** Turns ssh2's callback style into a promise (and synchronous throws into rejections). */
function call<T = void>(fn: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    try {
      fn((err, value) => (err ? reject(err) : resolve(value as T)));
    } catch (err) {
      reject(err);
    }
  });
}

/**
 * Sends one SFTP request. ssh2 silently drops requests issued after the channel closed (their
 * callbacks never run), so refuse them here.
 */
function req<T = void>(sftp: SFTPWrapper, fn: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
  if (!isOpen(sftp)) return Promise.reject(new Error('SFTP channel is closed'));
  return call(fn);
}

function isOpen(sftp: SFTPWrapper): boolean {
  // After the socket dies ssh2 marks only the incoming side of an SFTP channel closed.
  const ch = sftp as unknown as { outgoing?: { state?: string }; incoming?: { state?: string } };
  return ch.outgoing?.state === 'open' && ch.incoming?.state !== 'closed';
}

/** Thrown when the failure is final (bad credentials, host key refused): never retried. */
class FatalConnectError extends BackendError {
  constructor(message: string, cause?: unknown) {
    super(message, { cause, retryable: false });
    this.name = 'BackendError';
  }
}

/** Splits `host[:port]`, `[v6]:port` or a bare IPv6 address. */
export function splitHostPort(hostport: string): { host: string; port: number | undefined } {
  let host = hostport;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(hostport);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
  } else {
    const i = hostport.lastIndexOf(':');
    if (i >= 0 && hostport.indexOf(':') === i) {
      host = hostport.slice(0, i);
      portText = hostport.slice(i + 1);
    }
  }
  if (portText === undefined || portText === '') return { host, port: undefined };
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`invalid port in sftp host: ${hostport}`);
  }
  return { host, port };
}

/**
 * A walship replica client storing Litestream v0.3's layout on an SFTP server.
 *
 * - One SSH connection, opened on first use and re-dialled after it is lost; operations that
 *   fail because the connection dropped are retried with backoff (`maxRetries`).
 * - At most `maxConcurrency` (≤ 8) operations in flight on the connection.
 * - The server's host key is verified against `hostKey` or an OpenSSH known_hosts file; only
 *   `insecureIgnoreHostKey: true` skips the check.
 * - Writes go to a temporary name in the target directory and are renamed onto the final name
 *   with `posix-rename@openssh.com` (atomic replace), creating parent directories as needed.
 */
export class SftpReplicaClient implements ReplicaClient {
  readonly type = 'sftp';
  readonly capabilities: ReplicaClientCapabilities;
  /** Remote root directory ('' = login directory). */
  readonly root: string;
  readonly host: string;
  readonly port: number;

  private readonly options: SftpReplicaClientOptions;
  private readonly hostKey: PublicKey | undefined;
  private readonly slots: Semaphore;
  private readonly maxRetries: number;
  /** Shared with the scoped clients, as are `slots` (the bound is per connection). */
  private readonly session: Session;
  /** False for a scoped client: its close() leaves the shared session alone. */
  private readonly owner: boolean;

  constructor(options: SftpReplicaClientOptions) {
    const parent = (options as InternalOptions)[SCOPED_FROM];
    if (parent) {
      // A scoped client (see `scoped`): the parent's settings, session and slots, another root.
      this.host = parent.host;
      this.port = parent.port;
      this.options = parent.options;
      this.root = options.path ?? '';
      this.hostKey = parent.hostKey;
      this.slots = parent.slots;
      this.capabilities = parent.capabilities;
      this.maxRetries = parent.maxRetries;
      this.session = parent.session;
      this.owner = false;
      return;
    }
    this.session = { conn: undefined, dialing: undefined, posixRenameSupported: true };
    this.owner = true;
    if (!options.host) throw new InvalidArgumentError('host required for sftp replica');
    if (!options.user) throw new InvalidArgumentError('user required for sftp replica');
    const { host, port } = splitHostPort(options.host);
    this.host = host;
    this.port = options.port ?? port ?? 22;
    this.options = options;
    this.root = options.path ?? '';
    if (options.hostKey !== undefined && options.hostKey !== '') {
      const key = parsePublicKey(options.hostKey);
      if (!key) {
        throw new InvalidArgumentError('invalid host-key for sftp replica: expected "<type> <base64>", e.g. "ssh-ed25519 AAAA..."');
      }
      this.hostKey = key;
    }
    const max = options.maxConcurrency ?? MAX_CONCURRENCY;
    if (!Number.isInteger(max) || max < 1 || max > MAX_CONCURRENCY) {
      throw new InvalidArgumentError(`maxConcurrency must be an integer from 1 to ${MAX_CONCURRENCY}: ${max}`);
    }
    this.slots = new Semaphore(max);
    this.capabilities = { maxConcurrency: max, leases: true };
    this.maxRetries = options.maxRetries ?? 5;
    if (options.insecureIgnoreHostKey) {
      this.warn(
        `sftp: host key check disabled for ${this.endpoint()} (insecure-ignore-host-key: true); ` +
          'set host-key or known-hosts-path to verify the server',
      );
    }
  }

  // ---------------------------------------------------------------------------------------
  // ReplicaClient

  async generations(): Promise<string[]> {
    const dir = layout.generations(this.root);
    const entries = await this.slots.run(() => this.readdir(dir));
    return entries
      .filter((e) => isDir(e.attrs) && isGenerationName(e.filename))
      .map((e) => e.filename)
      .sort();
  }

  async deleteGeneration(generation: string): Promise<void> {
    const dir = layout.generation(this.root, generation);
    await this.removeTree(dir);
  }

  async snapshots(generation: string): Promise<SnapshotInfo[]> {
    const dir = layout.snapshots(this.root, generation);
    const entries = await this.slots.run(() => this.readdir(dir));
    const out: SnapshotInfo[] = [];
    for (const e of entries) {
      if (!isFile(e.attrs)) continue;
      const parsed = parseSnapshotFileName(e.filename);
      if (!parsed) continue;
      out.push({ generation, index: parsed.index, size: e.attrs.size, createdAt: mtime(e.attrs) });
    }
    return out.sort((a, b) => a.index - b.index);
  }

  async writeSnapshot(generation: string, index: number, body: Readable): Promise<SnapshotInfo> {
    const path = layout.snapshot(this.root, generation, index);
    const { size, createdAt } = await this.slots.run(() => this.upload(path, body));
    return { generation, index, size, createdAt };
  }

  async snapshotReader(generation: string, index: number): Promise<Readable> {
    return this.openReader(layout.snapshot(this.root, generation, index));
  }

  async deleteSnapshot(generation: string, index: number): Promise<void> {
    const path = layout.snapshot(this.root, generation, index);
    await this.slots.run(() => this.unlink(path));
  }

  async walSegments(generation: string): Promise<WALSegmentInfo[]> {
    const dir = layout.wal(this.root, generation);
    const entries = await this.slots.run(() => this.readdir(dir));
    const out: WALSegmentInfo[] = [];
    for (const e of entries) {
      if (!isFile(e.attrs)) continue;
      const parsed = parseWalSegmentFileName(e.filename);
      if (!parsed) continue;
      out.push({ generation, ...parsed, size: e.attrs.size, createdAt: mtime(e.attrs) });
    }
    return out.sort((a, b) => a.index - b.index || a.offset - b.offset);
  }

  async writeWALSegment(pos: Pos, body: Readable): Promise<WALSegmentInfo> {
    const path = layout.walSegment(this.root, pos.generation, pos.index, pos.offset);
    const { size, createdAt } = await this.slots.run(() => this.upload(path, body));
    return { generation: pos.generation, index: pos.index, offset: pos.offset, size, createdAt };
  }

  async walSegmentReader(pos: Pos): Promise<Readable> {
    return this.openReader(layout.walSegment(this.root, pos.generation, pos.index, pos.offset));
  }

  async deleteWALSegments(positions: readonly Pos[]): Promise<void> {
    const paths = positions.map((p) => layout.walSegment(this.root, p.generation, p.index, p.offset));
    await Promise.all(paths.map((path) => this.slots.run(() => this.unlink(path))));
  }

  /** The replica's lease: the highest `<path>/walship-lease/<seq>.json` (see `writeSequencedLease`). */
  async readLease(): Promise<StoredLease | undefined> {
    return readSequencedLease(this.leaseDirectory());
  }

  /**
   * Conditional lease write by exclusive create: the next sequence number is written to a
   * temporary file and moved onto its name with plain SSH_FXP_RENAME, which refuses to replace
   * an existing file (OpenSSH's sftp-server links, then unlinks).
   */
  async writeLease(body: string, ifVersion: string | null): Promise<string | null> {
    return writeSequencedLease(this.leaseDirectory(), body, ifVersion);
  }

  /**
   * A client rooted at `<root>/<subPath>` (checked and cleaned with `normalizeSubPath`) on this
   * client's SSH session: one connection for both, dialled by whichever uses it first, and one
   * `maxConcurrency` bound. No I/O. Its `close()` does nothing; this client's `close()` ends
   * the shared connection (a later call of either reconnects).
   * @throws InvalidArgumentError when `subPath` is empty, absolute, or has `.`/`..` segments
   */
  scoped(subPath: string): SftpReplicaClient {
    const options: InternalOptions = {
      ...this.options,
      path: joinKey(this.root, normalizeSubPath(subPath)),
      [SCOPED_FROM]: this,
    };
    return new SftpReplicaClient(options);
  }

  /**
   * Relative paths `P` whose `<root>/P/generations/` holds a valid generation, sorted: a walk
   * over the directories under the root (symbolic links are not followed).
   */
  async databases(): Promise<string[]> {
    return findDatabases({
      listFolders: async (rel) => {
        const dir = joinKey(this.root, rel) || '.';
        const entries = await this.slots.run(() => this.readdir(dir));
        return entries.filter((e) => isDir(e.attrs)).map((e) => e.filename);
      },
      hasGenerations: async (rel) => (await this.scoped(rel).generations()).length > 0,
      concurrency: this.capabilities.maxConcurrency ?? MAX_CONCURRENCY,
    });
  }

  /**
   * Closes the SSH connection (shared with the scoped clients). A later call reconnects.
   * Idempotent. On a scoped client it does nothing.
   */
  async close(): Promise<void> {
    if (!this.owner) return;
    const session = this.session;
    const dialing = session.dialing;
    if (dialing) await dialing.catch(() => undefined);
    const conn = session.conn;
    session.conn = undefined;
    if (conn) await this.endConnection(conn);
  }

  // ---------------------------------------------------------------------------------------
  // Operations (callers hold a slot)

  private leaseDirectory(): LeaseDirectory {
    const dir = leaseDirKey(this.root);
    return {
      list: async () => (await this.slots.run(() => this.readdir(dir))).filter((e) => isFile(e.attrs)).map((e) => e.filename),
      read: async (name) => {
        const path = posix.join(dir, name);
        try {
          const chunks: Buffer[] = [];
          for await (const c of await this.openReader(path)) chunks.push(c as Buffer);
          return Buffer.concat(chunks).toString('utf8');
        } catch (err) {
          if (isWalshipError(err, 'WALSHIP_NOT_FOUND')) return undefined;
          throw err;
        }
      },
      createExclusive: (name, body) => this.slots.run(() => this.createExclusive(posix.join(dir, name), Buffer.from(body))),
      remove: (name) => this.slots.run(() => this.unlink(posix.join(dir, name))),
    };
  }

  /** Creates `path` with `data` only if it does not exist (temporary file + plain rename). */
  private async createExclusive(path: string, data: Buffer): Promise<boolean> {
    const dir = posix.dirname(path);
    const tmp = posix.join(dir, `.${posix.basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
    await this.attempt('write', tmp, async (sftp) => {
      const open = () => req<Buffer>(sftp, (cb) => sftp.open(tmp, 'w', cb));
      let handle: Buffer;
      try {
        handle = await open();
      } catch (err) {
        if (!isNoSuchFile(err)) throw err;
        await this.mkdirp(sftp, dir);
        handle = await open();
      }
      try {
        if (data.length > 0) await req(sftp, (cb) => sftp.write(handle, data, 0, data.length, 0, cb));
      } finally {
        await req(sftp, (cb) => sftp.close(handle, cb)).catch(() => undefined);
      }
    });
    try {
      await this.attempt('rename', path, (sftp) => req(sftp, (cb) => sftp.rename(tmp, path, cb)));
      return true;
    } catch (err) {
      // Refused (the name exists), or our own rename landed and its reply was lost: either way
      // the name is taken now; the caller reads the lease to tell which.
      const exists = await this.attempt('stat', path, (sftp) => req<Stats>(sftp, (cb) => sftp.stat(path, cb))).then(
        () => true,
        (e: unknown) => (isWalshipError(e, 'WALSHIP_NOT_FOUND') ? false : Promise.reject(e)),
      );
      if (exists) return false;
      throw err;
    } finally {
      await this.attempt('delete', tmp, (s) => req(s, (cb) => s.unlink(tmp, cb))).catch(() => undefined);
    }
  }

  private async readdir(dir: string): Promise<FileEntryWithStats[]> {
    try {
      return await this.attempt('list', dir, (sftp) => req<FileEntryWithStats[]>(sftp, (cb) => sftp.readdir(dir, cb)));
    } catch (err) {
      if (isWalshipError(err, 'WALSHIP_NOT_FOUND')) return [];
      throw err;
    }
  }

  private async unlink(path: string): Promise<void> {
    try {
      await this.attempt('delete', path, (sftp) => req(sftp, (cb) => sftp.unlink(path, cb)));
    } catch (err) {
      if (isWalshipError(err, 'WALSHIP_NOT_FOUND')) return;
      throw err;
    }
  }

  private async rmdir(path: string): Promise<void> {
    try {
      await this.attempt('rmdir', path, (sftp) => req(sftp, (cb) => sftp.rmdir(path, cb)));
    } catch (err) {
      if (isWalshipError(err, 'WALSHIP_NOT_FOUND')) return;
      throw err;
    }
  }

  /** Removes a directory tree: files first, then directories deepest-first. */
  private async removeTree(dir: string): Promise<void> {
    const entries = await this.slots.run(() => this.readdir(dir));
    const files = entries.filter((e) => !isDir(e.attrs));
    const dirs = entries.filter((e) => isDir(e.attrs));
    await Promise.all(files.map((e) => this.slots.run(() => this.unlink(posix.join(dir, e.filename)))));
    for (const d of dirs) await this.removeTree(posix.join(dir, d.filename));
    await this.slots.run(() => this.rmdir(dir));
  }

  private async mkdirp(sftp: SFTPWrapper, dir: string): Promise<void> {
    if (dir === '' || dir === '.' || dir === '/') return;
    try {
      await req(sftp, (cb) => sftp.mkdir(dir, cb));
      return;
    } catch (first) {
      let err = first;
      if (isNoSuchFile(err)) {
        await this.mkdirp(sftp, posix.dirname(dir));
        try {
          await req(sftp, (cb) => sftp.mkdir(dir, cb));
          return;
        } catch (again) {
          err = again;
        }
      }
      // OpenSSH answers FAILURE when the directory exists (possibly created concurrently).
      const st = await req<Stats>(sftp, (cb) => sftp.stat(dir, cb)).catch(() => undefined);
      if (st && isDir(st)) return;
      throw err;
    }
  }

  /** Opens `path` for reading (NotFoundError when absent) and streams it. */
  private async openReader(path: string): Promise<Readable> {
    const opened = await this.slots.run(() =>
      this.attempt('open', path, async (sftp, conn) => ({
        sftp,
        conn,
        handle: await req<Buffer>(sftp, (cb) => sftp.open(path, 'r', cb)),
      })),
    );
    return new SftpFileReader(opened.sftp, opened.handle, (err) => this.translate(err, 'read', path, opened.conn));
  }

  /**
   * Streams `body` into a temporary file beside `path`, then renames it onto `path`.
   * Opening the temporary file (and creating directories) is retried after connection loss;
   * once `body` is being consumed, a failure is final for this call.
   */
  private async upload(path: string, body: Readable): Promise<{ size: number; createdAt: Date }> {
    const dir = posix.dirname(path);
    const tmp = posix.join(dir, `.${posix.basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
    const createdAt = new Date();
    let opened: { sftp: SFTPWrapper; handle: Buffer; conn: Connection };
    try {
      opened = await this.attempt('open', tmp, async (sftp, conn) => {
        const open = () => req<Buffer>(sftp, (cb) => sftp.open(tmp, 'w', cb));
        try {
          return { sftp, conn, handle: await open() };
        } catch (err) {
          if (!isNoSuchFile(err)) throw err;
          await this.mkdirp(sftp, dir);
          return { sftp, conn, handle: await open() };
        }
      });
    } catch (err) {
      body.destroy();
      throw err;
    }
    const { sftp, handle, conn } = opened;
    let size = 0;
    let handleOpen = true;
    let bodyError: { error: unknown } | undefined;
    const chunks = body[Symbol.asyncIterator]() as AsyncIterator<unknown>;
    try {
      const pending = new Set<Promise<void>>();
      let failure: unknown;
      for (;;) {
        let next: IteratorResult<unknown>;
        try {
          next = await chunks.next();
        } catch (error) {
          bodyError = { error };
          throw error;
        }
        if (next.done) break;
        const chunk = next.value;
        const buf = bodyChunkToBuffer(chunk, 'sftp');
        if (buf.length === 0) continue;
        const position = size;
        size += buf.length;
        const p: Promise<void> = req(sftp, (cb) => sftp.write(handle, buf, 0, buf.length, position, cb)).then(
          () => {
            pending.delete(p);
          },
          (err: unknown) => {
            pending.delete(p);
            failure ??= err;
          },
        );
        pending.add(p);
        if (pending.size >= WRITES_IN_FLIGHT_PER_UPLOAD) await Promise.race(pending);
        if (failure) throw failure;
      }
      await Promise.all(pending);
      if (failure) throw failure;
      handleOpen = false;
      await req(sftp, (cb) => sftp.close(handle, cb));
    } catch (err) {
      if (!bodyError) await chunks.return?.().catch(() => undefined);
      if (handleOpen) await req(sftp, (cb) => sftp.close(handle, cb)).catch(() => undefined);
      if (!conn.dead) await req(sftp, (cb) => sftp.unlink(tmp, cb)).catch(() => undefined);
      if (bodyError) throw bodyError.error;
      throw this.translate(err, 'write', tmp, conn);
    }
    try {
      await this.attempt('rename', path, (s) => this.rename(s, tmp, path));
    } catch (err) {
      await this.attempt('delete', tmp, (s) => req(s, (cb) => s.unlink(tmp, cb))).catch(() => undefined);
      throw err;
    }
    return { size, createdAt };
  }

  /** Atomic replace with posix-rename@openssh.com; plain rename where the server lacks it. */
  private async rename(sftp: SFTPWrapper, from: string, to: string): Promise<void> {
    if (this.session.posixRenameSupported) {
      try {
        await req(sftp, (cb) => sftp.ext_openssh_rename(from, to, cb));
        return;
      } catch (err) {
        if (!/does not support/i.test(msg(err))) throw err;
        this.session.posixRenameSupported = false;
      }
    }
    // SFTPv3 RENAME refuses to replace an existing file: remove the target first (not atomic).
    await req(sftp, (cb) => sftp.unlink(to, cb)).catch((err: unknown) => {
      if (!isNoSuchFile(err)) throw err;
    });
    await req(sftp, (cb) => sftp.rename(from, to, cb));
  }

  // ---------------------------------------------------------------------------------------
  // Connection management

  /**
   * Runs `fn` on a live connection. SFTP status errors are translated (NotFoundError,
   * BackendError) and returned at once; other failures mean the connection is unusable: it is
   * dropped and `fn` is retried on a new one, with exponential backoff, up to `maxRetries`.
   */
  private async attempt<T>(op: string, path: string, fn: (sftp: SFTPWrapper, conn: Connection) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      let conn: Connection | undefined;
      try {
        conn = await this.connection();
        return await fn(conn.sftp, conn);
      } catch (err) {
        const translated = this.translate(err, op, path, conn);
        if (!isWalshipError(translated, 'WALSHIP_BACKEND') || !translated.retryable || sftpStatus(err) !== undefined) {
          throw translated;
        }
        if (attempt >= this.maxRetries) throw translated;
        await sleep(Math.min(100 * 2 ** attempt, 2000));
      }
    }
  }

  /** Maps an error to walship's classes; drops the connection when it is no longer usable. */
  private translate(err: unknown, op: string, path: string, conn: Connection | undefined): Error {
    if (isWalshipError(err, 'WALSHIP_NOT_FOUND') || err instanceof FatalConnectError) return err;
    if (isWalshipError(err, 'WALSHIP_BACKEND') && conn === undefined) return err; // from dialling
    const status = sftpStatus(err);
    if (isNoSuchFile(err)) return new NotFoundError(`sftp: ${op} ${path}: no such file`, { cause: err });
    if (status !== undefined) {
      const retryable = status !== SFTP_STATUS.PERMISSION_DENIED && status !== SFTP_STATUS.OP_UNSUPPORTED;
      return new BackendError(`sftp: ${op} ${path}: ${msg(err)}`, { cause: err, retryable });
    }
    if (isWalshipError(err, 'WALSHIP_BACKEND')) return err;
    // Anything else (channel closed, "No response from server", ECONNRESET, …): connection lost.
    if (conn) this.drop(conn);
    return new BackendError(`sftp: ${op} ${path}: connection to ${this.endpoint()} lost: ${msg(err)}`, {
      cause: err,
      retryable: true,
    });
  }

  private endpoint(): string {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  private warn(message: string): void {
    if (this.options.warn) this.options.warn(message);
    else process.emitWarning(message);
  }

  private drop(conn: Connection): void {
    conn.dead = true;
    if (this.session.conn === conn) this.session.conn = undefined;
    void this.endConnection(conn);
  }

  private async endConnection(conn: Connection): Promise<void> {
    conn.dead = true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 2000);
      timer.unref();
    });
    // A polite SSH disconnect; the socket is destroyed whatever happens.
    await Promise.race([
      conn.client.end().then(
        () => undefined,
        () => undefined,
      ),
      timeout,
    ]);
    clearTimeout(timer);
    (conn.client as unknown as { client: { destroy(): void } }).client.destroy();
  }

  private async connection(): Promise<Connection> {
    const session = this.session;
    if (session.conn && !session.conn.dead) {
      if (isOpen(session.conn.sftp)) return session.conn;
      this.drop(session.conn);
    }
    if (!session.dialing) {
      session.dialing = this.dial().finally(() => {
        session.dialing = undefined;
      });
    }
    return session.dialing;
  }

  private async dial(): Promise<Connection> {
    const o = this.options;
    let privateKey: string | Buffer | undefined = o.privateKey;
    if (privateKey === undefined && o.keyPath) {
      try {
        privateKey = await readFile(o.keyPath);
      } catch (err) {
        throw new FatalConnectError(`sftp: cannot read key-path ${o.keyPath}: ${msg(err)}`, err);
      }
    }

    // Host key policy.
    let verdict: string | undefined;
    let serverHostKeyAlgos: string[] | undefined;
    let verify: (blob: Buffer) => boolean;
    const name = knownHostsName(this.host, this.port);
    const describeKey = (blob: Buffer) => `${blobKeyType(blob) ?? 'unknown-type'} key ${fingerprint(blob)}`;
    if (o.insecureIgnoreHostKey) {
      verify = () => true;
    } else if (this.hostKey) {
      const expected = this.hostKey;
      serverHostKeyAlgos = hostKeyAlgorithmsFor([expected.type]);
      verify = (blob) => {
        if (blob.equals(expected.blob)) return true;
        verdict =
          `sftp: host key verification failed for ${this.endpoint()}: server offered ${describeKey(blob)}, ` +
          `host-key is ${expected.type} key ${fingerprint(expected.blob)}; ` +
          "set host-key to the server's public key if it really changed";
        return false;
      };
    } else {
      const file = o.knownHostsPath || posix.join(homedir(), '.ssh', 'known_hosts');
      let entries: KnownHostEntry[] = [];
      let missing = false;
      try {
        entries = parseKnownHosts(await readFile(file, 'utf8'));
      } catch (err) {
        if ((err as { code?: unknown }).code !== 'ENOENT') {
          throw new FatalConnectError(`sftp: cannot read known-hosts-path ${file}: ${msg(err)}`, err);
        }
        missing = true;
      }
      const types = knownKeyTypes(entries, name);
      if (types.length > 0) serverHostKeyAlgos = hostKeyAlgorithmsFor(types);
      verify = (blob) => {
        const result = checkKnownHosts(entries, name, blob);
        if (result.ok) return true;
        if (result.reason === 'unknown') {
          verdict =
            `sftp: host key of ${name} (${describeKey(blob)}) is not in ${file}${missing ? ' (file not found)' : ''}; ` +
            `add it (e.g. ssh-keyscan -p ${this.port} ${this.host} >> ${file}) or set host-key`;
        } else if (result.reason === 'revoked') {
          verdict = `sftp: host key of ${name} (${describeKey(blob)}) is marked @revoked in ${file}`;
        } else {
          verdict =
            `sftp: host key verification failed for ${name}: server offered ${describeKey(blob)}, ` +
            `which does not match ${file}; fix the entry or set host-key if the key really changed`;
        }
        return false;
      };
    }

    let conn: Connection | undefined;
    const onGone = () => {
      if (conn) this.drop(conn);
    };
    const client = new SftpClient('walship', { error: onGone, end: onGone, close: onGone });
    const ssh = (client as unknown as { client: { setNoDelay(v: boolean): void; once(ev: string, fn: () => void): void } }).client;
    ssh.once('connect', () => ssh.setNoDelay(true));
    try {
      const sftp = await client.connect({
        host: this.host,
        port: this.port,
        username: o.user,
        ...(o.password !== undefined && o.password !== '' ? { password: o.password } : {}),
        ...(privateKey !== undefined ? { privateKey } : {}),
        ...(o.keyPassphrase ? { passphrase: o.keyPassphrase } : {}),
        readyTimeout: o.connectTimeout ?? 30_000,
        keepaliveInterval: 15_000,
        keepaliveCountMax: 3,
        hostVerifier: (key: Buffer) => verify(key),
        ...(serverHostKeyAlgos && serverHostKeyAlgos.length > 0
          ? { algorithms: { serverHostKey: { remove: serverHostKeyAlgos, prepend: serverHostKeyAlgos } } }
          : {}),
      } as SftpClient.ConnectOptions);
      ssh.setNoDelay(true);
      conn = { client, sftp, dead: false };
      sftp.on('error', onGone);
      sftp.on('close', onGone);
      this.session.conn = conn;
      return conn;
    } catch (err) {
      try {
        (client as unknown as { client: { destroy(): void } }).client.destroy();
      } catch {
        // ignore
      }
      if (verdict) throw new FatalConnectError(verdict, err);
      const m = msg(err);
      if (/authentication methods failed/i.test(m)) {
        throw new FatalConnectError(`sftp: authentication failed for ${o.user}@${this.endpoint()}; check user, password and key-path`, err);
      }
      if (/privateKey|passphrase|private key/i.test(m)) {
        throw new FatalConnectError(
          `sftp: cannot use private key${o.keyPath ? ` ${o.keyPath}` : ''}: ${m.replace(/^getConnection: /, '')}` +
            (/passphrase/i.test(m) ? ' (set key-passphrase for an encrypted key)' : ''),
          err,
        );
      }
      throw new BackendError(`sftp: cannot connect to ${this.endpoint()}: ${m.replace(/^getConnection: /, '')}`, {
        cause: err,
        retryable: true,
      });
    }
  }
}

const READ_CHUNK = 256 * 1024;

/**
 * Streams an open remote file with sequential reads; closes the handle before signalling the
 * end (so nothing is pending on the connection once the consumer has seen `end`), and on
 * destroy. Errors are translated by `onError`.
 */
class SftpFileReader extends Readable {
  private position = 0;
  private handleOpen = true;

  constructor(
    private readonly sftp: SFTPWrapper,
    private readonly handle: Buffer,
    private readonly onError: (err: unknown) => Error,
  ) {
    super({ highWaterMark: READ_CHUNK });
  }

  override _read(): void {
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    req<number>(this.sftp, (cb) => this.sftp.read(this.handle, buf, 0, buf.length, this.position, cb)).then(
      async (bytesRead) => {
        if (this.destroyed) return;
        if (!bytesRead) {
          this.handleOpen = false;
          await req(this.sftp, (cb) => this.sftp.close(this.handle, cb)).catch(() => undefined);
          this.push(null);
          return;
        }
        this.position += bytesRead;
        this.push(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead));
      },
      (err: unknown) => this.destroy(this.onError(err)),
    );
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.handleOpen) {
      callback(err);
      return;
    }
    this.handleOpen = false;
    req(this.sftp, (cb) => this.sftp.close(this.handle, cb)).then(
      () => callback(err),
      () => callback(err),
    );
  }
}

function isDir(attrs: { mode: number }): boolean {
  return (attrs.mode & 0o170000) === 0o040000;
}

function isFile(attrs: { mode: number }): boolean {
  return (attrs.mode & 0o170000) === 0o100000;
}

function mtime(attrs: { mtime: number }): Date {
  return new Date(attrs.mtime * 1000);
}
