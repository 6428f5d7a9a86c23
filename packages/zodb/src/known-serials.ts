// What a storage instance knows of objects' current serials, so that a commit's serial checks
// need no query for objects it loaded or wrote (an update's vote spent a tenth of its time
// looking up serials it had read a moment before).
//
// The knowledge stays true because every commit after `floor` reaches this table (`committed`):
// the storage reports its own commits and those it learns of by polling, in tid order, and its
// polls never miss one (a commit after the last poll has a tid above the last tid polled). An
// entry may be older than the truth only until the next poll: use it while holding the write
// lock, after polling.

import type { Oid, Tid } from './tid.js'

export class KnownSerials {
  readonly #serials = new Map<Oid, Tid>()
  /** Commits with a tid above this are all reported here; earlier ones may not be. */
  #floor: Tid
  readonly #max: number

  /** `floor`: the newest tid of the file when the instance starts reporting commits. */
  constructor(floor: Tid, max: number) {
    this.#floor = floor
    this.#max = max
  }

  get size(): number {
    return this.#serials.size
  }

  /** The current serial of `oid` (0n: none), if known. */
  get(oid: Oid): Tid | undefined {
    return this.#serials.get(oid)
  }

  /** Transaction `tid` wrote these oids (a deletion too: its row is the newest revision). */
  committed(tid: Tid, oids: Iterable<Oid>): void {
    // Should the table overflow meanwhile, it starts again from this very commit.
    for (const oid of oids) this.#learn(oid, tid, tid - 1n)
  }

  /**
   * A load found `serial` as the newest revision of `oid` before `snapshot` (INT64 max or more:
   * the newest in the file). It is the current one unless a commit at or after `snapshot`
   * changed the object, which is reported here only if it came after the floor. `newest`: the
   * newest tid reported so far.
   */
  loaded(oid: Oid, serial: Tid, snapshot: Tid, newest: Tid): void {
    if (snapshot <= this.#floor) return
    const known = this.#serials.get(oid)
    if (known === undefined) {
      if (this.#serials.size >= this.#max) {
        this.reset(newest)
        if (snapshot <= this.#floor) return
      }
      this.#serials.set(oid, serial)
    } else if (serial > known) {
      this.#serials.set(oid, serial)
    }
  }

  /** Forget everything (a pack may have removed revisions): only commits after `newest` count. */
  reset(newest: Tid): void {
    this.#serials.clear()
    this.#floor = newest
  }

  #learn(oid: Oid, serial: Tid, resetTo: Tid): void {
    const known = this.#serials.get(oid)
    if (known === undefined) {
      if (this.#serials.size >= this.#max) this.reset(resetTo)
      this.#serials.set(oid, serial)
    } else if (serial > known) {
      this.#serials.set(oid, serial)
    }
  }
}
