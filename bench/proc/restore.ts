// Restores a replica in its own process and reports time, WAL bytes and peak RSS (VmHWM), or
// (mode 'decode') runs walship's LZ4 frame decoder over the WAL segments into a file: the
// decode + write part of a restore, without parsing or applying the WAL.
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { restore } from '@walship/core';
import { createLz4FrameDecoder } from '@walship/core/format';
import { childConfig, hardDeadline, installChildErrorHandlers, now, procMem, send } from '../lib/common.js';
import { makeClient, type ReplicaSpec } from '../lib/clients.js';

interface Config {
  mode: 'restore' | 'decode';
  replica: ReplicaSpec;
  outputPath: string;
  verify?: 'integrity' | 'quick' | 'none';
  files?: string[];
  maxMs: number;
}

installChildErrorHandlers();
const cfg = childConfig<Config>();
hardDeadline(cfg.maxMs, `restore ${cfg.mode}`);
const memBefore = procMem();
// RSS sampled every 20 ms as a cross-check of VmHWM
let rssMax = 0;
const sampler = setInterval(() => (rssMax = Math.max(rssMax, procMem().rssBytes)), 20);

const t0 = now();
if (cfg.mode === 'restore') {
  const result = await restore({
    outputPath: cfg.outputPath,
    replicas: [{ name: 'bench', client: await makeClient(cfg.replica) }],
    verify: cfg.verify ?? 'none',
  });
  const ms = now() - t0;
  clearInterval(sampler);
  await send({
    type: 'result',
    ms,
    result: { ...result, partial: undefined },
    walBytes: result.walBytes ?? 0,
    memBefore,
    mem: procMem(),
    rssSampledMax: rssMax,
  });
} else {
  const out = createWriteStream(cfg.outputPath);
  let bytes = 0;
  for (const f of cfg.files!) {
    const dec = createLz4FrameDecoder();
    dec.on('data', (c: Buffer) => (bytes += c.length));
    await pipeline(createReadStream(f, { highWaterMark: 1 << 20 }), dec, out, { end: false });
  }
  await new Promise<void>((r) => out.end(r));
  const ms = now() - t0;
  clearInterval(sampler);
  await send({ type: 'result', ms, walBytes: bytes, memBefore, mem: procMem(), rssSampledMax: rssMax });
}
process.exit(0);
