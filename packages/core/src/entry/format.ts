// `@walship/core/format`: the on-disk and on-replica formats as codecs — SQLite WAL headers and
// frames with their checksums, LZ4 frames, xxHash32, and walship's object pipeline (LZ4, then
// optional age encryption). For tools that read or write replicas without a replicator.
export * from '../lz4/index.js';
export { chunkRecycler, decodeObject, encodeObject, encodeSource } from '../pipeline.js';
export * from '../wal/checksum.js';
export * from '../wal/format.js';
