// RAM: the memory pages live in — frames of a memfd with a size limit (see native/core/ram.h).
import { addon, type NativeRam, type RAMStats } from './native.js'

export const MiB = 1024 * 1024
export const DEFAULT_PAGE_SIZE = 2 * MiB
export const DEFAULT_RAM_LIMIT = 1024 * MiB

export interface RAMOptions {
  /** Bytes per page = block size of the files opened on it; a multiple of the OS page size. */
  pageSize?: number
  /** Above this many bytes, least recently used non-dirty pages are evicted. */
  limit?: number
  /**
   * When only dirty pages are left the limit stretches (a transaction's changes must fit in
   * memory); above the hard cap the process ends with a message naming it. 0: no cap.
   */
  hardCap?: number
  /** Freed frames are kept for reuse up to this many bytes, then punched out. Default: limit. */
  highWater?: number
}

export class RAM implements Disposable {
  readonly pageSize: number
  /** Bytes above which non-dirty pages are evicted. */
  readonly limit: number
  private nativeRam: NativeRam | null

  constructor(options: RAMOptions = {}) {
    this.pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE
    this.limit = options.limit ?? DEFAULT_RAM_LIMIT
    this.nativeRam = addon.ramCreate(
      this.pageSize,
      this.limit,
      options.hardCap ?? 0,
      options.highWater ?? 0,
    )
  }

  /** @internal */
  get native(): NativeRam {
    if (!this.nativeRam) throw new Error('RAM is closed')
    return this.nativeRam
  }

  get isClosed(): boolean {
    return this.nativeRam === null
  }

  /**
   * Gives the RAM's memory back to the OS. Refused while file handles are open on it.
   * A RAM not closed lives as long as the process.
   */
  close(): void {
    if (!this.nativeRam) return
    addon.ramDestroy(this.nativeRam)
    this.nativeRam = null
  }

  [Symbol.dispose](): void {
    this.close()
  }

  stats(): RAMStats {
    return addon.ramStats(this.native)
  }

  /** Evicts up to `batch` non-dirty pages, least recently used first; returns how many. */
  reclaim(batch = 64): number {
    return addon.ramReclaim(this.native, batch)
  }

  /** Pages in LRU order (least recently used first) as [fileh id, page offset]. */
  lru(): Array<[number, number]> {
    return addon.ramLru(this.native)
  }
}

const defaults = new Map<number, RAM>()

/** The process's shared RAM for a page size (limit from WENDELIN_RAM_LIMIT bytes, else 1 GiB). */
export function defaultRAM(pageSize: number = DEFAULT_PAGE_SIZE): RAM {
  let ram = defaults.get(pageSize)
  if (!ram || ram.isClosed) {
    const env = Number(process.env.WENDELIN_RAM_LIMIT)
    ram = new RAM({ pageSize, limit: Number.isFinite(env) && env > 0 ? env : DEFAULT_RAM_LIMIT })
    defaults.set(pageSize, ram)
  }
  return ram
}
