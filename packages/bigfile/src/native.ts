// The native addon (build/Release/virtmem.node, built from native/ by node-gyp), typed.
// Only this module touches the addon; everything else goes through RAM, FileH and Mapping.
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

declare const nativeTag: unique symbol
/** An opaque native object (napi External). */
export type NativeHandle<Tag extends string> = { readonly [nativeTag]: Tag }
export type NativeRam = NativeHandle<'ram'>
export type NativeFileH = NativeHandle<'fileh'>
export type NativeMapping = NativeHandle<'mapping'>

export type PageState = 'empty' | 'loading' | 'loading-invalidated' | 'loaded' | 'dirty'
export type NativeFileKind = 'js' | 'pattern' | 'noop' | 'overlay'

export interface RAMStats {
  pageSize: number
  limitBytes: number
  hardCapBytes: number
  /** Bytes of frames holding pages now. */
  bytesInUse: number
  /** Freed frames kept resident for reuse (first touch of fresh memory is slow). */
  bytesWarm: number
  bytesPeak: number
  framesPunched: number
  pagesLoaded: number
  pagesDirty: number
}

export interface VirtmemStats {
  /** Page faults served inside our mappings. */
  faults: number
  /** Of which: first writes to loaded pages (pages dirtied). */
  writeFaults: number
  loads: number
  /** Faults that waited for another thread's load of the same page. */
  loadWaits: number
  /** Loads thrown away because the page was invalidated meanwhile (and loaded again). */
  loadsInvalidated: number
  reclaimed: number
  /** Allocations above the RAM limit because only dirty pages were left. */
  stretches: number
  /** Loads started ahead of sequential faults (loader-backed files). */
  readaheads: number
  /** Accesses that hit a page while another thread moved its page tables, and were retried (kernels before 5.13 only). */
  holeRetries: number
  /** Frames of pages written and committed here, taken for new pages before new memory (below the limit). */
  recycledLeftBehind: number
}

/** What stressReadersStop reports. */
export interface StressReadersResult {
  reads: number
  mismatches: number
  firstMismatch: string
}

export interface PatternStatus {
  loads: number
  waitingAtGate: number
}

export type LoadHandler = (
  filehId: number,
  blk: number,
  dest: Uint8Array,
  job: number,
  asyncId: number | null,
  /** Set for a fileh.load whose previous loader stopped under it: report it failed, do not run it. */
  failure?: string,
) => void

export interface VirtmemAddon {
  abiVersion: number
  WRITEOUT_STORE: number
  WRITEOUT_MARKSTORED: number
  osPageSize(): number
  ramCreate(pageSize: number, limit: number, hardCap: number, highWater: number): NativeRam
  ramStats(ram: NativeRam): RAMStats
  ramReclaim(ram: NativeRam, batch: number): number
  ramDestroy(ram: NativeRam): void
  ramLru(ram: NativeRam): Array<[number, number]>
  filehOpen(ram: NativeRam, kind: NativeFileKind, description: string, spec: string | null, basePath?: string): NativeFileH
  filehId(fh: NativeFileH): number
  filehSpec(id: number): string | undefined
  filehLeaveBehind(fh: NativeFileH, pgoffset: number, pglen: number): void
  filehClose(fh: NativeFileH): void
  filehMmap(fh: NativeFileH, pgoffset: number, pglen: number): [ArrayBuffer, NativeMapping]
  filehWriteout(fh: NativeFileH, flags: number, store: ((blk: number, src: Uint8Array) => void) | null): void
  filehDiscard(fh: NativeFileH): void
  filehInvalidate(fh: NativeFileH, pgoffset: number): void
  filehPageState(fh: NativeFileH, pgoffset: number): PageState
  filehDirtyPages(fh: NativeFileH): number[]
  filehLoadAsync(fh: NativeFileH, pgoffset: number, asyncId: number): 'present' | 'busy' | 'started' | 'invalidated'
  filehLoadHere(fh: NativeFileH, pgoffset: number, fill: (dest: Uint8Array) => void): 'present' | 'busy' | 'loaded' | 'invalidated'
  filehFrameRecord(fh: NativeFileH, pgoffset: number, prefix: Uint8Array, n: number): ArrayBuffer | undefined
  frameRecordRelease(record: ArrayBuffer): void
  frameRecordsSetLimit(limit: number): void
  /** The snapshot (a tid) loads of this handle read at; set by the owning thread. */
  filehSetSnapshot(fh: NativeFileH, tid: bigint): void
  /** Any thread: the handle's snapshot, undefined once it is closed. */
  filehSnapshot(filehId: number): bigint | undefined
  /** Reports loaders attached to completed loads, in completion order; drains them. */
  filehTakeLoadReports(fh: NativeFileH): Array<[number, Uint8Array]>
  /** Every page in memory or being loaded, ascending, with its state. */
  filehPages(fh: NativeFileH): Array<[number, PageState]>
  patternControl(fh: NativeFileH, what: 'status' | 'seed' | 'gate' | 'fail', value?: number | boolean): PatternStatus
  mappingUnmap(m: NativeMapping, buffer: ArrayBuffer | null): void
  mappingIsLive(m: NativeMapping): boolean
  mappingMapped(m: NativeMapping): boolean[]
  mappingBasePages(m: NativeMapping): number
  mappingPrefault(m: NativeMapping, offset: number, length: number, write: boolean): void
  serveLoads(handler: LoadHandler): void
  /** `report` (successful loads only) is kept for filehTakeLoadReports of the handle. */
  completeLoad(job: number, error: string | null, report?: Uint8Array): 'loaded' | 'invalidated' | 'failed'
  loaderCount(): number
  /** A loader worker is being started (fault loads wait for it instead of failing). */
  loaderStarting(): void
  /** A loader worker started with loaderStarting() stopped before it served. */
  loaderStartFailed(): void
  virtmemStats(): VirtmemStats
  /** Tests: plain threads reading `buffer` at random, page p checked against expected[p]. */
  stressReadersStart(buffer: ArrayBuffer, pageSize: number, expected: Uint8Array, threads: number): NativeHandle<'stress'>
  stressReadersStop(readers: NativeHandle<'stress'>): StressReadersResult
}

const here = path.dirname(fileURLToPath(import.meta.url))
/**
 * packages/bigfile/dist → repository root, where node-gyp puts the addon; WENDELIN_VIRTMEM_ADDON
 * names another build (to try a native change without replacing the addon others load).
 */
export const addonPath = process.env.WENDELIN_VIRTMEM_ADDON || path.resolve(here, '../../../build/Release/virtmem.node')

export const addon = createRequire(import.meta.url)(addonPath) as VirtmemAddon
