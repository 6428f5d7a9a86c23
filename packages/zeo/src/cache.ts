// The client's record cache: revisions of objects keyed by (oid, serial), each valid for
// snapshots in (serial, next]. A revision whose `next` is null is the newest one this client
// knows of: invalidations received later close its range. Bounded in bytes, least recently used
// out first.

import type { Oid, Tid } from '@wendelin/zodb'

export interface CachedRevision {
  data: Uint8Array
  serial: Tid
  /** Tid of the next revision, or null: current as far as the invalidations received tell. */
  next: Tid | null
  /** Whether the records this one refers to were asked for already. */
  refsDone?: boolean
  /** Whether loadBeforeMany handed it to a reader (a value, not a leaf to read ahead from). */
  read?: boolean
  /** The oids it refers to, once computed. */
  refs?: Oid[]
}

/**
 * What a cached revision costs beyond its bytes, counted against the limit: its object, the view
 * of its data, its serials (bigints), its oid's list and map entry — about 400 bytes measured
 * (Node 20). Counting the data alone, a 1 MiB cache of 1-byte records held 437 MB.
 */
export const REVISION_OVERHEAD = 384

function cost(r: CachedRevision): number {
  return r.data.byteLength + REVISION_OVERHEAD
}

export class RecordCache {
  readonly #entries = new Map<Oid, CachedRevision[]>()
  #bytes = 0
  hits = 0
  misses = 0

  constructor(readonly limit: number) {}

  get stats(): { hits: number; misses: number; entries: number; bytes: number } {
    return { hits: this.hits, misses: this.misses, entries: this.#entries.size, bytes: this.#bytes }
  }

  /**
   * The revision to read before `tid`, if cached. A current revision (next null) answers only
   * for tid <= horizon + 1, `horizon` being the last tid whose invalidations were all received.
   */
  lookup(oid: Oid, tid: Tid, horizon: Tid): CachedRevision | undefined {
    const revs = this.#entries.get(oid)
    if (revs !== undefined) {
      for (const r of revs) {
        if (r.serial < tid && (r.next === null ? tid <= horizon + 1n : tid <= r.next)) {
          // most recently used: move to the end
          this.#entries.delete(oid)
          this.#entries.set(oid, revs)
          this.hits++
          return r
        }
      }
    }
    this.misses++
    return undefined
  }

  /** Whether `lookup` would answer (without counting a hit or a miss). */
  has(oid: Oid, tid: Tid, horizon: Tid): boolean {
    return this.peek(oid, tid, horizon) !== undefined
  }

  /** What `lookup` would answer, without counting it or moving it in the LRU order. */
  peek(oid: Oid, tid: Tid, horizon: Tid): CachedRevision | undefined {
    const revs = this.#entries.get(oid)
    if (revs === undefined) return undefined
    return revs.find((r) => r.serial < tid && (r.next === null ? tid <= horizon + 1n : tid <= r.next))
  }

  bySerial(oid: Oid, serial: Tid): Uint8Array | undefined {
    return this.#entries.get(oid)?.find((r) => r.serial === serial)?.data
  }

  /**
   * Cache `rev`. A record that views a buffer over twice its size (a frame of a reply with other
   * records, a batch of frames from one socket read, a cache file) is copied first, into `rev`
   * itself: kept as a view, a 3-byte record would keep all of a 4 MiB buffer alive, and the byte
   * limit would not bound the memory the cache holds. A copy under 4 KiB goes into an 8 KiB slab
   * of Node's Buffer pool, which the records cached one after the other fill together (a buffer
   * of its own each: ~2 us more per small record, measured on loadBeforeMany); so a record keeps
   * at most twice its size alive, or one slab — and a buffer no larger than a slab is kept.
   * (A plain Uint8Array view, not a Buffer: a Buffer's slice() would not copy.)
   */
  put(oid: Oid, rev: CachedRevision): void {
    if (this.limit <= 0) return
    const n = rev.data.byteLength
    const held = rev.data.buffer.byteLength
    if (held > 2 * n && held > 8192) {
      const slab = Buffer.allocUnsafe(n)
      const copy = new Uint8Array(slab.buffer, slab.byteOffset, n)
      copy.set(rev.data)
      rev.data = copy
    }
    let revs = this.#entries.get(oid)
    if (revs === undefined) {
      revs = []
      this.#entries.set(oid, revs)
    }
    const same = revs.findIndex((r) => r.serial === rev.serial)
    if (same >= 0) {
      const old = revs[same]!
      // Keep the better-known end of the range.
      if (old.next !== null && rev.next === null) return
      this.#bytes -= cost(old)
      revs.splice(same, 1)
    }
    revs.push(rev)
    if (revs.length > 4) this.#bytes -= cost(revs.shift()!)
    this.#bytes += cost(rev)
    while (this.#bytes > this.limit && this.#entries.size > 0) {
      const [victim, vrevs] = this.#entries.entries().next().value as [Oid, CachedRevision[]]
      this.#entries.delete(victim)
      for (const r of vrevs) this.#bytes -= cost(r)
    }
  }

  /** Transaction `tid` wrote `oids`: their current revisions end there. */
  invalidate(tid: Tid, oids: readonly Oid[]): void {
    for (const oid of oids) {
      const revs = this.#entries.get(oid)
      if (revs === undefined) continue
      for (const r of revs) if (r.next === null && r.serial < tid) r.next = tid
    }
  }

  /** Every cached revision, least recently used first. */
  *entries(): IterableIterator<[Oid, CachedRevision]> {
    for (const [oid, revs] of this.#entries) for (const r of revs) yield [oid, r]
  }

  clear(): void {
    this.#entries.clear()
    this.#bytes = 0
  }
}
