'use strict';
// Starts the Firebase Storage emulator's GCS JSON API (firebase-tools 15.34.2 internals) without
// the Java rules runtime: the /storage/v1, /upload/storage/v1 and /download routes use the
// emulator's admin storage layer, which never consults security rules.
//
// Usage: TMPDIR=<per-instance dir> node gcs-emulator.cjs [port]
// Prints `gcs emulator listening on 127.0.0.1:<port>` once ready. Blobs land in
// $TMPDIR/firebase/storage/blobs and are not removed on exit: the caller deletes TMPDIR.
// These are internal APIs: keep firebase-tools pinned to an exact version.
const { StorageEmulator } = require('firebase-tools/lib/emulator/storage');
const { createApp } = require('firebase-tools/lib/emulator/storage/server');
const { EmulatorRegistry } = require('firebase-tools/lib/emulator/registry');

const PROJECT = 'demo-test';

async function main() {
  const port = Number(process.argv[2] || 0);
  const emu = new StorageEmulator({ projectId: PROJECT, host: '127.0.0.1', port, auto_download: false });
  const app = await createApp(PROJECT, emu);
  const server = app.listen(port, '127.0.0.1', () => {
    const actual = server.address().port;
    emu.args.port = actual;
    EmulatorRegistry.set('storage', emu);
    process.stdout.write(`gcs emulator listening on 127.0.0.1:${actual}\n`);
  });
  server.on('error', (err) => {
    process.stderr.write(`gcs emulator failed: ${err && err.message}\n`);
    process.exit(1);
  });
}

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
main().catch((err) => {
  process.stderr.write(`gcs emulator failed: ${(err && err.stack) || err}\n`);
  process.exit(1);
});
