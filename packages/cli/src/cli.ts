import { errorMessage } from '@walship/core';
import { parseArgs } from './args.js';
import { ConfigErrors, isUserError, UsageError } from './errors.js';
import { type CliIo, copyLitestreamCredentials, defaultIo, type Invocation } from './invocation.js';
import { scrubString } from './logger.js';
import { commandUsage, findCommand, mainUsage } from './usage.js';
import { cliVersion } from './version.js';

export { type CliIo, copyLitestreamCredentials, defaultIo } from './invocation.js';

/**
 * Runs the CLI with `argv` (without node and script) and resolves with the exit code:
 * 0 success, 1 any error (one line on stderr: `walship: <message>`), or — for
 * `replicate -exec` — the child's exit code.
 */
export async function main(argv: readonly string[], io: CliIo = defaultIo()): Promise<number> {
  copyLitestreamCredentials(io.env);
  const [command, ...rest] = argv;
  try {
    if (command === undefined) {
      io.stderr.write(mainUsage());
      return 1;
    }
    if (command === 'help' || command === '-h' || command === '--help' || command === '-help') {
      const topic = command === 'help' ? rest[0] : undefined;
      const spec = topic ? findCommand(topic) : undefined;
      if (topic && !spec) throw new UsageError(`unknown help topic ${JSON.stringify(topic)} (see walship help)`);
      io.stdout.write(spec ? commandUsage(spec) : mainUsage());
      return 0;
    }
    if (command === '--version' || command === '-version') {
      io.stdout.write(`${cliVersion()}\n`);
      return 0;
    }
    if (command.startsWith('-')) throw new UsageError(`flags go after the command: walship <command> ${command} … (see walship help)`);
    const spec = findCommand(command);
    if (!spec) throw new UsageError(`unknown command ${JSON.stringify(command)} (see walship help)`);
    const args = parseArgs(command, spec.flags, rest);
    if (args.help) {
      io.stdout.write(commandUsage(spec));
      return 0;
    }
    const inv: Invocation = { spec, args, io };
    switch (command) {
      case 'version':
        if (args.positionals.length > 0) throw new UsageError('too many arguments');
        io.stdout.write(`${cliVersion()}\n`);
        return 0;
      case 'databases':
        return await (await import('./commands/list.js')).databasesCommand(inv);
      case 'generations':
        return await (await import('./commands/list.js')).generationsCommand(inv);
      case 'snapshots':
        return await (await import('./commands/list.js')).snapshotsCommand(inv);
      case 'wal':
        return await (await import('./commands/list.js')).walCommand(inv);
      case 'restore':
        return await (await import('./commands/restore.js')).restoreCommand(inv);
      case 'replicate':
        return await (await import('./commands/replicate.js')).replicateCommand(inv);
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)} (see walship help)`);
    }
  } catch (err) {
    reportError(err, io);
    return 1;
  }
}

/** Prints an error: one line for user errors, plus a stack trace hint (or trace) otherwise. */
export function reportError(err: unknown, io: Pick<CliIo, 'stderr' | 'env'>): void {
  const message = scrubString(errorMessage(err));
  if (isUserError(err)) {
    // Several config problems: one line each.
    const lines = err instanceof ConfigErrors ? err.problems.map((p) => scrubString(errorMessage(p))) : [message];
    io.stderr.write(lines.map((line) => `walship: ${line}\n`).join(''));
    if (io.env.WALSHIP_DEBUG && err.stack) io.stderr.write(`${err.stack}\n`);
    return;
  }
  if (io.env.WALSHIP_DEBUG) {
    io.stderr.write(`walship: ${message}\n${err instanceof Error && err.stack ? `${err.stack}\n` : ''}`);
    return;
  }
  io.stderr.write(`walship: ${message} (run with WALSHIP_DEBUG=1 for a stack trace)\n`);
}
