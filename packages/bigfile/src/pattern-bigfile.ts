// PatternBigFile: blocks computed natively (native/core/pattern_file.h) — for tests and
// benchmarks. Block blk reads as bytes (seed + blk) & 0xff, or is left as the frame was
// ('noop', to time a fault alone). Loads can be held at a gate or made to fail.
import { BigFile, type BigFileSpec, type JsonValue } from './bigfile.js'

export interface PatternBigFileOptions {
  blksize: number
  noop?: boolean
}

export class PatternBigFile extends BigFile {
  readonly blksize: number
  readonly noop: boolean
  /** storeblk calls: [blk, a copy of the block]. */
  readonly stored: Array<[number, Uint8Array]> = []

  constructor(options: PatternBigFileOptions) {
    super()
    this.blksize = options.blksize
    this.noop = options.noop ?? false
  }

  static fromSpec(args: JsonValue): PatternBigFile {
    return new PatternBigFile(args as unknown as PatternBigFileOptions)
  }

  spec(): BigFileSpec {
    return { module: import.meta.url, export: 'PatternBigFile', args: { blksize: this.blksize, noop: this.noop } }
  }

  override get nativeKind(): 'pattern' | 'noop' {
    return this.noop ? 'noop' : 'pattern'
  }

  loadblk(): void {
    throw new Error('PatternBigFile blocks are loaded natively')
  }

  storeblk(blk: number, src: Uint8Array): void {
    this.stored.push([blk, src.slice()])
  }
}
