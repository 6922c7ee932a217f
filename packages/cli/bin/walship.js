#!/usr/bin/env node
// The `walship` command. The implementation is compiled to ../dist (npm run build).
import('../dist/bin.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/bin.js')) {
    console.error(
      'walship: not built yet: run `npm run build` in the walship checkout (or `npm run walship -- …`, which builds on first use)',
    );
    process.exit(1);
  }
  throw err;
});
