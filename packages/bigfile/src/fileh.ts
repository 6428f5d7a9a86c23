// FileH: a handle of one BigFile, and Mapping: a range of its pages mapped into memory.
//
// Reading mapped memory that is not loaded faults; the page is loaded by a loader worker and
// the access continues. The first write to a loaded page marks it dirty. Dirty pages are
// written out (dirtyWriteout) or dropped (dirtyDiscard) — the transaction layer does that
// at commit/abort.
import { constants as bufferConstants } from 'node:buffer'

import type { BigFile } from './bigfile.js'
import { loaderPool, runningLoaderPool } from './loader-pool.js'
import { log, writeoutLog } from './log.js'
import { addon, type NativeFileH, type NativeFileKind, type NativeMapping, type PageState, type PatternStatus } from './native.js'
import { defaultRAM, type RAM } from './ram.js'

export const WRITEOUT_STORE = addon.WRITEOUT_STORE
export const WRITEOUT_MARKSTORED = addon.WRITEOUT_MARKSTORED

/** Largest ArrayBuffer this Node can hold: one mapping is at most this long. */
export const MAX_MAPPING_BYTES = bufferConstants.MAX_LENGTH

export type FileHMode = 'load' | 'overlay'

export interface FileHOptions {
  /** RAM to hold pages in; default: the shared RAM for the file's block size. */
  ram?: RAM
  /**
   * 'load' (default): every page is loaded into RAM by loadblk on first access.
   * 'overlay' ("mmap overlay"): the file's mmapBase() is mapped read-only under the mappings,
   * so reads cost no RAM of ours and share the kernel's page cache; only written pages take
   * RAM until they are written out or discarded.
   */
  mode?: FileHMode
}

export interface PageRange {
  pgoffset: number
  pglen: number
}

export class FileH implements Disposable {
  readonly file: BigFile
  readonly ram: RAM
  readonly id: number
  readonly mode: FileHMode
  private native: NativeFileH
  private readonly kind: NativeFileKind
  private closed = false
  private readonly mappings = new Set<WeakRef<Mapping>>()

  constructor(file: BigFile, options: FileHOptions = {}) {
    this.file = file
    this.ram = options.ram ?? defaultRAM(file.blksize)
    if (file.blksize !== this.ram.pageSize)
      throw new RangeError(`file block size ${file.blksize} differs from the RAM page size ${this.ram.pageSize}`)
    this.mode = options.mode ?? 'load'
    let kind: NativeFileKind = file.nativeKind
    let basePath: string | undefined
    if (this.mode === 'overlay') {
      const base = kind === 'js' ? file.mmapBase() : null
      if (!base) throw new TypeError(`${file.describe()} cannot be opened in overlay mode: it has no mmapBase()`)
      kind = 'overlay' // blocks are read natively from the base: no loader workers
      basePath = base.path
    } else if (this.mode !== 'load') {
      throw new TypeError(`unknown FileH mode ${String(this.mode)}`)
    }
    this.kind = kind
    const pool = kind === 'js' ? loaderPool() : null // start the loaders before the first fault
    this.native = addon.filehOpen(this.ram.native, kind, file.describe(), JSON.stringify(file.spec()), basePath)
    this.id = addon.filehId(this.native)
    // Each loader imports and opens the file now, while this thread goes on, not at the first
    // fault (for a ZBigFile: ~50 ms of imports and its storage; the second loader's would
    // otherwise come with its first readahead, after the first page).
    pool?.opened(this.id)
    log('open fileh %d: %s', this.id, file.describe())
  }

  get blksize(): number {
    return this.file.blksize
  }

  /** The native handle (for ZBigFile's handle: snapshot word and load reports). @internal */
  get _native(): NativeFileH {
    this.checkOpen()
    return this.native
  }

  get isClosed(): boolean {
    return this.closed
  }

  /**
   * Maps pages [pgoffset, pgoffset+pglen) into memory. The mapping's ArrayBuffer is at most
   * MAX_MAPPING_BYTES long (4 GiB on Node 20): map larger files in windows.
   */
  mmap(pgoffset: number, pglen: number): Mapping {
    this.checkOpen()
    if (!Number.isSafeInteger(pgoffset) || pgoffset < 0) throw new RangeError('mmap: pgoffset must be a non-negative integer')
    if (!Number.isSafeInteger(pglen) || pglen <= 0) throw new RangeError('mmap: pglen must be a positive integer')
    const bytes = pglen * this.blksize
    if (bytes > MAX_MAPPING_BYTES)
      throw new RangeError(
        `mmap: ${bytes} bytes exceed the largest ArrayBuffer of this Node (${MAX_MAPPING_BYTES} bytes); ` +
          `map at most ${Math.floor(MAX_MAPPING_BYTES / this.blksize)} pages at a time`,
      )
    const [buffer, native] = addon.filehMmap(this.native, pgoffset, pglen)
    const mapping = new Mapping(this, buffer, native, pgoffset, pglen)
    this.mappings.add(new WeakRef(mapping))
    log('fileh %d: mmap pages [%d, %d)', this.id, pgoffset, pgoffset + pglen)
    return mapping
  }

  /** Stores dirty pages with `store` (default file.storeblk; STORE) and/or marks them stored (MARKSTORED). */
  dirtyWriteout(flags: number = WRITEOUT_STORE | WRITEOUT_MARKSTORED, store?: (blk: number, src: Uint8Array) => void): void {
    this.checkOpen()
    writeoutLog('fileh %d: writeout flags %d, %d dirty pages', this.id, flags, this.dirtyPages().length)
    addon.filehWriteout(this.native, flags, store ?? ((blk, src) => this.file.storeblk(blk, src)))
  }

  /**
   * A read-only record of `prefix` followed by the first `n` bytes of dirty page `pgoffset`,
   * without a copy of the page: the page's frame mapped right after the prefix. null when the
   * page is not dirty or the mappings cannot be made (copy the page then). Its bytes are the
   * page's only while the page stays dirty (until it is stored or discarded): release it
   * (releaseFrameRecord) once done; one never released is unmapped when it is collected (Node
   * does that from its event loop only). Never write into it: it is mapped read-only, and a
   * write there ends the process.
   */
  frameRecord(pgoffset: number, prefix: Uint8Array, n: number): Uint8Array | null {
    this.checkOpen()
    const ab = addon.filehFrameRecord(this.native, pgoffset, prefix, n)
    return ab === undefined ? null : new Uint8Array(ab)
  }

  /** Drops every dirty page: the next access loads it from the file again. */
  dirtyDiscard(): void {
    this.checkOpen()
    writeoutLog('fileh %d: discard', this.id)
    addon.filehDiscard(this.native)
  }

  /** Forgets page pgoffset (loaded, dirty or being loaded): the next access loads it again. */
  invalidatePage(pgoffset: number): void {
    this.checkOpen()
    addon.filehInvalidate(this.native, pgoffset)
  }

  /**
   * Tells that the caller is done with pages `range` (a walk wider than the RAM has passed
   * them): those loaded and mapped nowhere are left behind, their frames taken for new pages
   * before new memory is (see the README, RAM). Nothing else changes: a later access loads
   * them again if they were taken, and the first such access ends recycling for this RAM.
   */
  leaveBehind(range: PageRange): void {
    this.checkOpen()
    addon.filehLeaveBehind(this.native, range.pgoffset, range.pglen)
  }

  /** Pages the RAM holds at its limit (a walk over more is wider than the RAM). */
  get ramPages(): number {
    return Math.floor(this.ram.limit / this.ram.pageSize)
  }

  isDirty(pgoffset: number): boolean {
    return this.pageState(pgoffset) === 'dirty'
  }

  /** Dirty page offsets, ascending. */
  dirtyPages(): number[] {
    this.checkOpen() // a closed handle has no pages: "none" would read as "nothing to write"
    return addon.filehDirtyPages(this.native)
  }

  pageState(pgoffset: number): PageState {
    this.checkOpen()
    return addon.filehPageState(this.native, pgoffset)
  }

  /**
   * Loads pages of `range` that are not in memory yet, without faulting: rejects with the
   * backend's error (after retries of transient ones) instead of ending the process.
   */
  async load(range: PageRange): Promise<void> {
    this.checkOpen()
    const waits: Array<Promise<void>> = []
    for (let pg = range.pgoffset; pg < range.pgoffset + range.pglen; pg++) waits.push(this.loadPage(pg))
    await Promise.all(waits)
  }

  private async loadPage(pg: number): Promise<void> {
    for (;;) {
      if (this.closed) throw new Error('file handle is closed')
      const pool = this.kind === 'js' ? loaderPool() : null
      const pending = pool?.expect()
      let status: ReturnType<typeof addon.filehLoadAsync>
      try {
        status = addon.filehLoadAsync(this.native, pg, pending?.asyncId ?? 0)
      } catch (e) {
        if (pending) pool?.forget(pending.asyncId)
        throw e
      }
      if (status === 'started' && pending) {
        if ((await pending.done) === 'loaded') return
        continue // invalidated while loading: load again
      }
      if (pending) pool?.forget(pending.asyncId)
      if (status === 'present') return
      // 'busy' (another load of this page is under way) or 'invalidated': look again shortly
      await new Promise<void>((resolve) => setTimeout(resolve, 1))
    }
  }

  /**
   * Loads page `pgoffset` on this thread, `fill` writing its block into `dest` (a view of the
   * page's frame, valid only during the call): for the owner of a JS file who can read a block
   * itself while no loader worker serves yet. 'present' or 'busy' (being loaded): nothing done;
   * 'invalidated': loaded but invalidated meanwhile, dropped. A throw from `fill` drops the page
   * and propagates. `fill` must not touch the page through a mapping (that fault would wait for
   * this very call: the process ends with a message naming the page) nor close this handle
   * (refused).
   */
  loadHere(pgoffset: number, fill: (dest: Uint8Array) => void): 'loaded' | 'invalidated' | 'present' | 'busy' {
    this.checkOpen()
    return addon.filehLoadHere(this.native, pgoffset, fill)
  }

  /** Frees every page. Refused while mappings are live or a writeout runs. */
  close(): void {
    if (this.closed) return
    addon.filehClose(this.native)
    this.closed = true
    this.file.close()
    if (this.kind === 'js') runningLoaderPool()?.closed(this.id)
    log('close fileh %d', this.id)
  }

  [Symbol.dispose](): void {
    this.close()
  }

  /** Mappings not yet unmapped (nor collected). */
  liveMappings(): Mapping[] {
    const out: Mapping[] = []
    for (const ref of this.mappings) {
      const m = ref.deref()
      if (m?.isLive) out.push(m)
      else this.mappings.delete(ref)
    }
    return out
  }

  /** Test hooks of PatternBigFile handles (seed, gate, failing loads). @internal */
  patternControl(what: 'status' | 'seed' | 'gate' | 'fail', value?: number | boolean): PatternStatus {
    return addon.patternControl(this.native, what, value)
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('file handle is closed')
  }
}

export interface PrefaultOptions {
  /** Dirty the pages too, so the kernel may write into them (e.g. fs.readSync into it). */
  write?: boolean
}

export class Mapping implements Disposable {
  readonly fileh: FileH
  readonly pgoffset: number
  readonly pglen: number
  private buf: ArrayBuffer
  private readonly native: NativeMapping

  /** @internal */
  constructor(fileh: FileH, buffer: ArrayBuffer, native: NativeMapping, pgoffset: number, pglen: number) {
    this.fileh = fileh
    this.buf = buffer
    this.native = native
    this.pgoffset = pgoffset
    this.pglen = pglen
  }

  /** The mapped memory. Detached (length 0) once unmapped. */
  get buffer(): ArrayBuffer {
    return this.buf
  }

  get byteLength(): number {
    return this.pglen * this.fileh.blksize
  }

  get isLive(): boolean {
    return addon.mappingIsLive(this.native)
  }

  bytes(): Uint8Array {
    // Unmapping detaches the buffer (length 0; a live mapping is never empty).
    if (this.buf.byteLength === 0) throw new Error('mapping is unmapped')
    return new Uint8Array(this.buf)
  }

  /** Which pages are mapped in this mapping now (index 0 is page pgoffset). */
  mappedPages(): boolean[] {
    return addon.mappingMapped(this.native)
  }

  /** Overlay mode: how many leading pages show the base file (whole blocks it had at mmap). */
  basePages(): number {
    return addon.mappingBasePages(this.native)
  }

  /**
   * Loads (and with `write`, dirties) the pages covering bytes [offset, offset+length), so
   * system calls can be handed that memory: they fail with EFAULT on pages not loaded.
   */
  prefault(offset = 0, length: number = this.byteLength - offset, options: PrefaultOptions = {}): void {
    addon.mappingPrefault(this.native, offset, length, options.write ?? false)
  }

  /** Unmaps; the buffer is detached. Dirty pages stay in the file handle. */
  unmap(): void {
    addon.mappingUnmap(this.native, this.buf)
  }

  [Symbol.dispose](): void {
    this.unmap()
  }
}

/** Releases a record of FileH.frameRecord now: unmapped, and every view of it becomes empty. */
export function releaseFrameRecord(record: Uint8Array): void {
  addon.frameRecordRelease(record.buffer as ArrayBuffer)
}

/** @internal Tests: the most frame records live at once (0: the default, an eighth of vm.max_map_count). */
export function setFrameRecordsLimit(limit: number): void {
  addon.frameRecordsSetLimit(limit)
}
