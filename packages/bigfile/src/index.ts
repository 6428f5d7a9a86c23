// @wendelin/bigfile: BigFile, file handles and mappings over the native virtual memory manager.
export { BigFile, openBigFile, type BigFileClass, type BigFileSpec, type JsonValue } from './bigfile.js'
export { FileBigFile, type FileBigFileOptions } from './file-bigfile.js'
export { PatternBigFile, type PatternBigFileOptions } from './pattern-bigfile.js'
export {
  FileH,
  Mapping,
  MAX_MAPPING_BYTES,
  WRITEOUT_MARKSTORED,
  WRITEOUT_STORE,
  setFrameRecordsLimit,
  type FileHMode,
  type FileHOptions,
  type PageRange,
  type PrefaultOptions,
} from './fileh.js'
export { configureLoaders, loaderCount, type LoaderOptions } from './loader-pool.js'
export { RAM, defaultRAM, DEFAULT_PAGE_SIZE, DEFAULT_RAM_LIMIT, MiB, type RAMOptions } from './ram.js'
export type { PageState, RAMStats, VirtmemStats } from './native.js'

import { addon, type VirtmemStats } from './native.js'

/** Process-wide virtual memory statistics (faults, loads, reclaims, stretches). */
export function virtmemStats(): VirtmemStats {
  return addon.virtmemStats()
}

/** The OS page size: RAM page sizes must be multiples of it. */
export function osPageSize(): number {
  return addon.osPageSize()
}
export { ZBigFile, type ZBigFileOptions, type BlockDeps } from './zbigfile.js'
export { ZBigFileH, openZBigFileHandles, type ZBigFileHOptions, type ZBigFileHStats } from './zbigfile-handle.js'
export { ZBigFileBlocks, fetchBlocksAhead, readBlockAt, type ZBigFileBlocksArgs } from './zbigfile-loader.js'
export { ZBlk, ZBlk0, ZBlk1, ZData, CHUNK_SIZE, AUTO_ZBLK1_MAX_CHANGED_FRACTION, chooseFormat, isPageRecord, type PageRecord, type ZBlkFormat, type ZBigFileFormat } from './zblk.js'
