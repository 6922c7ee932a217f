import { formatFlagHelp, type FlagSpec } from './args.js';

const CONFIG_FLAGS: FlagSpec[] = [
  {
    name: 'config',
    type: 'string',
    placeholder: 'PATH',
    help: 'config file (default: $WALSHIP_CONFIG, $LITESTREAM_CONFIG,\n/etc/walship.yml, then /etc/litestream.yml)',
  },
  { name: 'no-expand-env', type: 'boolean', help: 'do not replace $VAR and ${VAR} in the config file' },
];

const JSON_FLAG: FlagSpec = { name: 'json', type: 'boolean', help: 'print a JSON array instead of a table' };
const REPLICA_FLAG: FlagSpec = { name: 'replica', type: 'string', placeholder: 'NAME', help: 'only this replica' };

export interface CommandSpec {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly description: string;
  readonly flags: readonly FlagSpec[];
}

const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'databases',
    summary: 'list databases specified in config file',
    usage: 'walship databases [flags]',
    description: 'Lists the databases of the config file and the names of their replicas.',
    flags: [...CONFIG_FLAGS, JSON_FLAG],
  },
  {
    name: 'generations',
    summary: 'list available generations for a database',
    usage: 'walship generations [flags] DB_PATH\n  walship generations [flags] REPLICA_URL',
    description:
      'Lists the generations of a database on each of its replicas, with the lag since the\n' +
      'last write and the time range each generation covers.',
    flags: [...CONFIG_FLAGS, REPLICA_FLAG, JSON_FLAG],
  },
  {
    name: 'replicate',
    summary: 'runs a server to replicate databases',
    usage: 'walship replicate [flags]\n  walship replicate [flags] DB_PATH REPLICA_URL [REPLICA_URL...]',
    description:
      'Replicates every database of the config file (or DB_PATH to the given replica URLs)\n' +
      'until SIGINT or SIGTERM, then syncs once more (bounded by shutdown-sync-timeout) and exits.\n' +
      'A plain path as REPLICA_URL is a file replica.',
    flags: [
      ...CONFIG_FLAGS,
      { name: 'exec', type: 'string', placeholder: 'CMD', help: 'run CMD as a child process; exit with its exit code after a final sync' },
      { name: 'addr', type: 'string', placeholder: 'HOST:PORT', help: 'serve /metrics and /healthz here (overrides the addr key)' },
      { name: 'shutdown-sync-timeout', type: 'string', placeholder: 'DURATION', help: 'bound of the final sync at shutdown (default 30s)' },
      { name: 'dry-run', type: 'boolean', help: 'validate the configuration, print it as JSON (credentials redacted) and exit' },
      {
        name: 'force',
        type: 'boolean',
        help: "take over every replica's lease from another walship that still holds it (a planned\nfailover; the first upload then waits ¾ of the lease TTL)",
      },
    ],
  },
  {
    name: 'restore',
    summary: 'recovers database backup from a replica',
    usage: 'walship restore [flags] DB_PATH\n  walship restore [flags] REPLICA_URL',
    description:
      'Restores a database from the newest matching backup of its replicas. With DB_PATH the\n' +
      'replicas come from the config file and the output defaults to DB_PATH.',
    flags: [
      ...CONFIG_FLAGS,
      { name: 'output', aliases: ['o'], type: 'string', placeholder: 'PATH', help: 'output path (required with REPLICA_URL)' },
      REPLICA_FLAG,
      { name: 'generation', type: 'string', placeholder: 'NAME', help: 'restore from this generation' },
      { name: 'index', type: 'string', placeholder: 'HEX', help: 'restore up to this WAL index (hex, inclusive)' },
      {
        name: 'timestamp',
        type: 'string',
        placeholder: 'TIME',
        help: 'restore to this point in time (RFC 3339, e.g. 2000-01-01T00:00:00Z)',
      },
      { name: 'parallelism', type: 'string', placeholder: 'NUM', help: 'WAL downloads in parallel (default 8)' },
      { name: 'if-db-not-exists', type: 'boolean', help: 'do nothing (exit 0) if the output path already exists' },
      { name: 'if-replica-exists', type: 'boolean', help: 'do nothing (exit 0) if no backup is found' },
      { name: 'overwrite', type: 'boolean', help: 'replace an existing output database' },
      { name: 'partial', type: 'boolean', help: 'on damaged WAL, restore up to the last good transaction instead of failing' },
      { name: 'verify', type: 'string', placeholder: 'MODE', help: 'check the result: integrity, quick or none' },
      {
        name: 'follow',
        aliases: ['f'],
        type: 'boolean',
        help: 'after the restore, keep the output current from the replica until SIGINT/SIGTERM\n(readers may query it meanwhile: open it read-only with a busy timeout)',
      },
      {
        name: 'follow-interval',
        type: 'string',
        placeholder: 'DURATION',
        help: 'with -f: how often the replica is polled (default 1s; one listing request each)',
      },
      {
        name: 'progress',
        type: 'boolean',
        help: 'show progress on stderr: an updating line on a terminal (the default there),\nplain lines every 5 s otherwise; --progress=false hides it',
      },
      { name: 'json', type: 'boolean', help: 'progress and the result as JSON lines on stdout (for tools)' },
      { name: 'verbose', aliases: ['v'], type: 'boolean', help: 'debug logging' },
    ],
  },
  {
    name: 'snapshots',
    summary: 'list available snapshots for a database',
    usage: 'walship snapshots [flags] DB_PATH\n  walship snapshots [flags] REPLICA_URL',
    description:
      'Lists the snapshots of a database on each of its replicas (index in decimal as Litestream prints it, size in bytes; --json: index in hex).',
    flags: [...CONFIG_FLAGS, REPLICA_FLAG, JSON_FLAG],
  },
  {
    name: 'version',
    summary: 'prints the binary version',
    usage: 'walship version',
    description: 'Prints the version of walship.',
    flags: [],
  },
  {
    name: 'wal',
    summary: 'list available WAL files for a database',
    usage: 'walship wal [flags] DB_PATH\n  walship wal [flags] REPLICA_URL',
    description:
      'Lists the WAL segments of a database on each of its replicas (index and offset in decimal as Litestream prints them; --json: hex).',
    flags: [
      ...CONFIG_FLAGS,
      REPLICA_FLAG,
      { name: 'generation', type: 'string', placeholder: 'NAME', help: 'only this generation' },
      JSON_FLAG,
    ],
  },
];

export function findCommand(name: string): CommandSpec | undefined {
  return COMMANDS.find((c) => c.name === name);
}

export function mainUsage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return (
    'walship is a tool for replicating SQLite databases (a drop-in for Litestream v0.3).\n\n' +
    'Usage:\n\n' +
    '\twalship <command> [arguments]\n\n' +
    'The commands are:\n\n' +
    COMMANDS.map((c) => `\t${c.name.padEnd(width)}  ${c.summary}`).join('\n') +
    '\n\nRun "walship <command> -h" for the flags of a command.\n'
  );
}

export function commandUsage(spec: CommandSpec): string {
  const all = [...spec.flags, { name: 'help', aliases: ['h'], type: 'boolean' as const, help: 'show this help' }];
  const flags = `\nFlags (Go style -flag and GNU style --flag both work; values as -flag VALUE or -flag=VALUE):\n${formatFlagHelp(all)}\n`;
  return `Usage:\n  ${spec.usage}\n\n${spec.description}\n${flags}`;
}
