/**
 * walship's command line as a library: `main(argv)` runs a command exactly as the `walship`
 * binary does; the config loader, URL mapping, logger and metrics are exported for embedding.
 */
export { main, defaultIo, reportError, copyLitestreamCredentials, type CliIo } from './cli.js';
export { parseArgs, type FlagSpec, type ParsedArgs } from './args.js';
export {
  loadConfigFile,
  parseConfigText,
  adHocConfig,
  replicaFromUrl,
  locateConfig,
  DEFAULTS,
  DEFAULT_CONFIG_PATHS,
  type CliConfig,
  type DbSpec,
  type ReplicaSpec,
  type LoggingSpec,
  type ConfigOptions,
} from './config.js';
export { expandEnv } from './expand-env.js';
export { createLogger, parseLogLevel, isSecretKey, scrubString, type CliLogger, type LogLevel, type LogFormat } from './logger.js';
export { BackendRegistry, BUILTIN_BACKENDS, type BackendSource } from './registry.js';
export { Metrics, startMetricsServer, type HealthReport } from './metrics.js';
export { splitShellWords } from './shellwords.js';
export { formatTable, formatTime, formatLag } from './format.js';
export { UsageError, CliError, ConfigErrors, isUserError } from './errors.js';
export { cliVersion } from './version.js';
