// BigFiles for bench/virtmem.bench.js, in their own module so loader workers can reopen them
// (a loader imports the module a spec names; importing the benchmark itself would rerun it).
import { BigFile } from '@wendelin/bigfile'

/** loadblk does nothing: the cost of a fault through a loader worker, without the copy. */
export class NoopBigFile extends BigFile {
  constructor(blksize) {
    super()
    this.blksize = blksize
  }
  static fromSpec(args) {
    return new NoopBigFile(args.blksize)
  }
  spec() {
    return { module: import.meta.url, export: 'NoopBigFile', args: { blksize: this.blksize } }
  }
  loadblk() {}
  storeblk() {}
}
