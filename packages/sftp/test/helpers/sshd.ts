/**
 * Test harness: runs Debian's OpenSSH sshd on a free 127.0.0.1 port with its own config,
 * host key, client keys and temp dir. See /work/shared/test-servers.md ("SFTP").
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export const SSHD = '/usr/sbin/sshd';
const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;

/**
 * Why sshd cannot run here, or undefined when it can. Under CI=true callers must fail with this
 * message; elsewhere they skip with it.
 */
export function sshdUnavailable(): string | undefined {
  if (!existsSync(SSHD)) {
    return `${SSHD} not found: install Debian's openssh-server (apt-get install openssh-server) to run the sftp tests`;
  }
  if (spawnSync('ssh-keygen', ['-?'], { stdio: 'ignore' }).error) {
    return 'ssh-keygen not found: install openssh-client (apt-get install openssh-client)';
  }
  return undefined;
}

/** Skip (locally) or fail (CI=true) when sshd is unavailable; returns the `skip` option for node:test. */
export function requireSshd(): string | false {
  const why = sshdUnavailable();
  if (!why) return false;
  if (process.env.CI === 'true') throw new Error(`sftp tests need sshd under CI: ${why}`);
  return why;
}

export interface SshdServer {
  readonly port: number;
  readonly dir: string;
  /** Absolute, writable directory for test data (owned by `user`). */
  readonly dataDir: string;
  /** User the key pair authenticates (the current user; `root` when running as root). */
  readonly user: string;
  /** Private key authorized for `user` (unencrypted). */
  readonly clientKeyPath: string;
  /** Private key authorized for `user`, encrypted with `encryptedKeyPassphrase`. */
  readonly encryptedKeyPath: string;
  readonly encryptedKeyPassphrase: string;
  /** The server's public host key line (`ssh-ed25519 AAAA... comment`). */
  readonly hostKeyLine: string;
  readonly hostKeyPubPath: string;
  /** `ssh-keygen -lf` fingerprint of the host key (`SHA256:...`). */
  readonly hostKeyFingerprint: string;
  /** Recent sshd stderr output (for diagnosing failures). */
  log(): string;
  /** Kills the listener and every per-connection child (connections drop). */
  kill(): Promise<void>;
  /** Starts sshd again on the same port. */
  start(): Promise<void>;
  /** kill() then remove the temp dir and any temporary user. */
  stop(): Promise<void>;
  /** Creates a temporary system user with a password (root only). */
  addPasswordUser(): Promise<{ user: string; password: string; dataDir: string }>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function run(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Direct and indirect children of `pid`, from /proc. */
async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number[]>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = parents.get(ppid) ?? [];
      list.push(Number(name));
      parents.set(ppid, list);
    } catch {
      // process vanished
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of parents.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

function killQuiet(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

export async function startSshd(): Promise<SshdServer> {
  const dir = await mkdtemp(join(tmpdir(), 'walship-sftp-'));
  await chmod(dir, 0o755);
  const port = await freePort();
  const user = IS_ROOT ? 'root' : userInfo().username;
  const hostKey = join(dir, 'host_key');
  const clientKey = join(dir, 'client_key');
  const encryptedKey = join(dir, 'client_key_encrypted');
  const passphrase = `correct horse ${randomBytes(4).toString('hex')}`;
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'walship-test-host', '-f', hostKey]);
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'walship-test-client', '-f', clientKey]);
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', 'walship-test-enc', '-f', encryptedKey]);
  const hostKeyLine = (await readFile(`${hostKey}.pub`, 'utf8')).trim();
  const hostKeyFingerprint = run('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${hostKey}.pub`]).split(/\s+/)[1]!;
  const authorizedKeys = join(dir, 'authorized_keys');
  await writeFile(authorizedKeys, (await readFile(`${clientKey}.pub`, 'utf8')) + (await readFile(`${encryptedKey}.pub`, 'utf8')), {
    mode: 0o644,
  });
  const dataDir = join(dir, 'data');
  await mkdir(dataDir, { mode: 0o755 });
  const config = join(dir, 'sshd_config');
  await writeFile(
    config,
    [
      `ListenAddress 127.0.0.1`,
      `Port ${port}`,
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      'StrictModes no',
      'UsePAM no',
      IS_ROOT ? 'PermitRootLogin yes' : '',
      'PasswordAuthentication yes',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'AllowTcpForwarding no',
      'X11Forwarding no',
      'PrintMotd no',
      'UseDNS no',
      'MaxSessions 20',
      'MaxStartups 50',
      'Subsystem sftp internal-sftp',
      '',
    ].join('\n'),
  );
  if (IS_ROOT) await mkdir('/run/sshd', { recursive: true });
  run(SSHD, ['-t', '-f', config]);

  let child: ChildProcess | undefined;
  const log: string[] = [];
  const users: string[] = [];

  const start = async (): Promise<void> => {
    const proc = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    // If the test process dies without stop(), do not leave the listener behind.
    const onExit = () => killQuiet(proc.pid!, 'SIGTERM');
    process.once('exit', onExit);
    proc.once('exit', () => process.off('exit', onExit));
    let stderr = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        killQuiet(proc.pid!, 'SIGKILL');
        reject(new Error(`sshd did not start within 10 s: ${stderr.trim()}`));
      }, 10_000);
      proc.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes(`Server listening on 127.0.0.1 port ${port}`)) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`sshd exited (${code}) before listening: ${stderr.trim()}`));
      });
    });
    proc.removeAllListeners('exit');
    proc.stderr!.removeAllListeners('data');
    proc.stderr!.on('data', (d: Buffer) => {
      log.push(d.toString());
      if (log.length > 2000) log.splice(0, 1000);
    });
  };

  const kill = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const kids = await descendants(proc.pid!);
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    killQuiet(proc.pid!, 'SIGTERM');
    for (const k of kids) killQuiet(k, 'SIGKILL');
    await exited;
    // Per-connection children that were forked while we looked.
    for (const k of await descendants(proc.pid!)) killQuiet(k, 'SIGKILL');
  };

  await start();

  return {
    port,
    dir,
    dataDir,
    user,
    clientKeyPath: clientKey,
    encryptedKeyPath: encryptedKey,
    encryptedKeyPassphrase: passphrase,
    hostKeyLine,
    hostKeyPubPath: `${hostKey}.pub`,
    hostKeyFingerprint,
    kill,
    start,
    log: () => log.join(''),
    async stop() {
      await kill();
      for (const u of users) spawnSync('userdel', ['-f', u], { stdio: 'ignore' });
      await rm(dir, { recursive: true, force: true });
    },
    async addPasswordUser() {
      if (!IS_ROOT) throw new Error('password auth needs root (useradd + chpasswd)');
      const name = `wsftp${randomBytes(4).toString('hex')}`;
      const password = randomBytes(12).toString('base64url');
      const home = join(dir, `home-${name}`);
      run('useradd', ['-M', '-d', home, '-s', '/bin/sh', name]);
      users.push(name);
      run('chpasswd', [], `${name}:${password}\n`);
      await mkdir(home, { mode: 0o755 });
      const uid = Number(run('id', ['-u', name]).trim());
      const gid = Number(run('id', ['-g', name]).trim());
      await chown(home, uid, gid);
      return { user: name, password, dataDir: home };
    },
  };
}

/** `[127.0.0.1]:port ssh-ed25519 AAAA...` — a known_hosts line for the server. */
export function knownHostsLine(server: SshdServer, host = '127.0.0.1'): string {
  const [type, b64] = server.hostKeyLine.split(/\s+/);
  return `[${host}]:${server.port} ${type} ${b64}`;
}
