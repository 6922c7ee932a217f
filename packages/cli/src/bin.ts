#!/usr/bin/env node
import { main, reportError } from './cli.js';

// Node prints process warnings (e.g. the AWS SDK's Node version notice) as multi-line text on
// stderr; a CLI keeps stderr to one line per problem. Shown with WALSHIP_DEBUG=1.
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (process.env.WALSHIP_DEBUG) process.stderr.write(`walship: warning: ${w.name}: ${w.message.split('\n')[0]}\n`);
});

// A closed pipe (`walship wal … | head -1`, a log collector going away) is not an error and
// must never stop replication; other stream errors are ignored for the same reason.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});

// A bug must still end with one line (and the debug hint), not a raw stack trace.
const crash = (err: unknown) => {
  reportError(err, { stderr: process.stderr, env: process.env });
  process.exit(1);
};
process.on('uncaughtException', crash);
process.on('unhandledRejection', crash);

main(process.argv.slice(2)).then(
  (code) => exit(code),
  (err: unknown) => {
    reportError(err, { stderr: process.stderr, env: process.env });
    exit(1);
  },
);

/** Exits once stdout and stderr have flushed (pipes may be asynchronous). */
function exit(code: number): void {
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
}
