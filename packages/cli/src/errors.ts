import { ConfigError, isWalshipError, WalshipError } from '@walship/core';

/**
 * A mistake on the command line (unknown flag, missing argument, bad flag value) or any other
 * problem the user can fix. Printed as one line (`walship: <message>`), exit code 1.
 */
export class UsageError extends WalshipError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WALSHIP_USAGE', message, options);
  }
}

/**
 * A user-fixable problem met while running a command (missing database directory,
 * unreachable replica, bind address in use, …). Printed as one line, exit code 1.
 */
export class CliError extends WalshipError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WALSHIP_CLI', message, options);
  }
}

/**
 * True when `err` is an expected, user-facing error: any walship error (they carry a
 * `WALSHIP_*` code and a one-line message). Everything else is an internal error.
 */
export function isUserError(err: unknown): err is WalshipError {
  return isWalshipError(err);
}

/**
 * Several config problems found in one run: the message is one line per problem (each a
 * ConfigError naming file, line and key), and `walship` prints each as its own `walship: …` line.
 */
export class ConfigErrors extends ConfigError {
  readonly problems: readonly ConfigError[];

  constructor(problems: readonly ConfigError[]) {
    super(problems.map((p) => p.message).join('\n'), { cause: problems[0] });
    this.problems = problems;
  }
}
