// Spare ZBlk0 records: the memory of records a commit handed to a storage that copied them
// (Storage.copiesRecords) and let go, kept for the next commit's storeblk to write into again.
//
// A bulk commit writes each dirty block into a record of its own (2 MiB); left to the garbage
// collector, every commit's records are new memory: first touch of fresh memory costs a page
// fault per 4 KiB on these VMs, and hundreds of MiB of external memory make V8 collect sooner.
// Only ZBigFileH gives records back, after the commit that stored them finished, and only once
// the block object that viewed them is a ghost again (ZBlk0.releaseRecord).

/** A record written by bytesRecord and its data bytes (the record's tail). */
export interface SpareRecord {
  record: Uint8Array
  bytes: Uint8Array
}

export class SpareRecords {
  #byLength = new Map<number, SpareRecord[]>()
  #bytes = 0
  /** A record was taken or given since the last idle(). */
  #active = false

  /** Bytes of records kept. */
  get bytes(): number {
    return this.#bytes
  }

  /** A kept record whose data is `n` bytes long (a block's trimmed length), or undefined. */
  take(n: number): SpareRecord | undefined {
    const list = this.#byLength.get(n)
    const spare = list?.pop()
    if (spare !== undefined) {
      this.#bytes -= spare.record.byteLength
      this.#active = true
    }
    return spare
  }

  /** Keeps `spare` unless that would keep more than `capBytes`; true when kept. */
  give(spare: SpareRecord, capBytes: number): boolean {
    if (this.#bytes + spare.record.byteLength > capBytes) return false
    let list = this.#byLength.get(spare.bytes.length)
    if (list === undefined) this.#byLength.set(spare.bytes.length, (list = []))
    list.push(spare)
    this.#bytes += spare.record.byteLength
    this.#active = true
    return true
  }

  /**
   * At a transaction boundary that stored nothing: lets every kept record go when none was
   * taken or given since the previous such boundary. A process that stopped writing in bulk
   * keeps no records beyond its next two transactions; one that goes on keeps them.
   */
  idle(): void {
    if (!this.#active) this.clear()
    this.#active = false
  }

  /** Lets every kept record go (to the garbage collector). */
  clear(): void {
    this.#byLength.clear()
    this.#bytes = 0
  }
}

/** The records ZBlk0.storeFrom writes into before it allocates new ones. @internal */
export const spareZBlk0Records = new SpareRecords()
