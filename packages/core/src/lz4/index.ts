/**
 * Streaming LZ4 frame codec (the object format of Litestream v0.3) and xxHash32.
 *
 * - {@link createLz4FrameEncoder}: bytes → one LZ4 frame (`04 22 4D 18 64 70 B9 …` by default).
 * - {@link createLz4FrameSourceEncoder}: the same frame, read block by block from a {@link ByteSource}.
 * - {@link createLz4FrameDecoder}: any standard LZ4 frame → bytes; `CorruptDataError` on bad input.
 * - {@link XxHash32} / {@link xxh32}: the frame format's checksum.
 */
export { createLz4FrameEncoder, lz4FrameHeader, type Lz4FrameEncoderOptions } from './frame-encoder.js';
export { createLz4FrameSourceEncoder, CHUNK_RECYCLER, type ByteSource } from './source-encoder.js';
export { createLz4FrameDecoder } from './frame-decoder.js';
export { LZ4_FRAME_MAGIC, type Lz4BlockSize } from './frame.js';
export { XxHash32, xxh32 } from './xxhash32.js';
