// FileBigFile: a BigFile over a plain OS file (block blk at byte offset blk*blksize).
import fs from 'node:fs'

import { BigFile, type BigFileSpec, type JsonValue } from './bigfile.js'
import { DEFAULT_PAGE_SIZE } from './ram.js'

export interface FileBigFileOptions {
  blksize?: number
  /** Create the file if missing (default true). */
  create?: boolean
}

export class FileBigFile extends BigFile {
  readonly path: string
  readonly blksize: number
  private fd: number | null = null

  constructor(path: string, options: FileBigFileOptions = {}) {
    super()
    this.path = path
    this.blksize = options.blksize ?? DEFAULT_PAGE_SIZE
    if (options.create ?? true) fs.closeSync(fs.openSync(path, 'a'))
  }

  static fromSpec(args: JsonValue): FileBigFile {
    const a = args as { path: string; blksize: number }
    return new FileBigFile(a.path, { blksize: a.blksize, create: false })
  }

  spec(): BigFileSpec {
    return { module: import.meta.url, export: 'FileBigFile', args: { path: this.path, blksize: this.blksize } }
  }

  override describe(): string {
    return `FileBigFile ${this.path} (blksize ${this.blksize})`
  }

  override mmapBase(): { path: string } {
    return { path: this.path }
  }

  private handle(): number {
    if (this.fd === null) this.fd = fs.openSync(this.path, 'r+')
    return this.fd
  }

  loadblk(blk: number, dest: Uint8Array): void {
    const fd = this.handle()
    let done = 0
    while (done < dest.length) {
      const n = fs.readSync(fd, dest, done, dest.length - done, blk * this.blksize + done)
      if (n === 0) break // end of file: the rest of the block reads as zeros
      done += n
    }
    if (done < dest.length) dest.fill(0, done)
  }

  storeblk(blk: number, src: Uint8Array): void {
    const fd = this.handle()
    let done = 0
    while (done < src.length) done += fs.writeSync(fd, src, done, src.length - done, blk * this.blksize + done)
  }

  /** Size of the file in bytes. */
  size(): number {
    return fs.fstatSync(this.handle()).size
  }

  override close(): void {
    if (this.fd !== null) fs.closeSync(this.fd)
    this.fd = null
  }
}
