/** Constants of the LZ4 frame format (lz4 frame format specification v1.6.x). */

/** Magic number of a standard LZ4 frame (`04 22 4D 18` on the wire). */
export const LZ4_FRAME_MAGIC = 0x184d2204;
/** Magic number of the legacy LZ4 format (`lz4 -l`), which walship does not read. */
export const LZ4_LEGACY_MAGIC = 0x184c2102;
/** Skippable frames use magic numbers `0x184D2A50` to `0x184D2A5F`. */
export const LZ4_SKIPPABLE_MAGIC_MIN = 0x184d2a50;
export const LZ4_SKIPPABLE_MAGIC_MAX = 0x184d2a5f;

/** The maximum block sizes a frame may declare (BD byte values 4 to 7). */
export type Lz4BlockSize = 65536 | 262144 | 1048576 | 4194304;

/** Block maximum size for BD index 4..7. */
export const LZ4_BLOCK_SIZES: readonly Lz4BlockSize[] = [65536, 262144, 1048576, 4194304];

/** Matches in linked blocks reach back at most this far. */
export const LZ4_WINDOW_SIZE = 65536;

/** FLG bits. */
export const FLG_VERSION_MASK = 0xc0;
export const FLG_VERSION_01 = 0x40;
export const FLG_BLOCK_INDEPENDENCE = 0x20;
export const FLG_BLOCK_CHECKSUM = 0x10;
export const FLG_CONTENT_SIZE = 0x08;
export const FLG_CONTENT_CHECKSUM = 0x04;
export const FLG_RESERVED = 0x02;
export const FLG_DICT_ID = 0x01;

/** High bit of a block size word: the block is stored uncompressed. */
export const BLOCK_UNCOMPRESSED_BIT = 0x80000000;
