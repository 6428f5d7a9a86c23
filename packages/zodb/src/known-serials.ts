// What a storage instance knows of objects' current serials, so that a commit's serial checks
// need no query for objects it loaded or wrote.
//
// The knowledge stays true because every commit after `floor` reaches this table (`committed`):
// the storage reports its own commits and those it learns of by polling, in tid order, and its
// polls never miss one (a commit after the last poll has a tid above the last tid polled). An
// entry may be older than the truth only until the next poll: use it while holding the write
// lock, after polling.
//
// Oids are dense small integers, so the table is an array indexed by oid (0: unknown; no tid is
// 0): recording a serial costs a store, where a Map of bigints cost a twentieth of a cold read.
// Oids at or above `maxOid` are not recorded (their checks query).
//
// An oid the instance reserved for itself (newOid) is known to have no revision until the
// instance commits one (NONE, below every tid): a new object's store needs no query either. This
// mark in the same array replaced a Set of such oids (an add per new object, a delete per commit).

import type { Oid, Tid } from './tid.js'

const INITIAL_LENGTH = 1 << 12
/** An oid with no revision (reserved by this instance, not committed yet); 0n is "unknown". */
const NONE = -1n

export class KnownSerials {
  #serials = new BigInt64Array(INITIAL_LENGTH)
  /** Commits with a tid above this are all reported here; earlier ones may not be. */
  #floor: Tid
  readonly #maxOid: number

  /** `floor`: the newest tid of the file when the instance starts reporting commits. */
  constructor(floor: Tid, maxOid: number) {
    this.#floor = floor
    this.#maxOid = maxOid
  }

  /** The current serial of `oid` if known: 0n if it has no revision. */
  get(oid: Oid): Tid | undefined {
    const i = Number(oid) // inexact only far beyond the table
    const serials = this.#serials
    if (i >= serials.length) return undefined
    const serial = serials[i]!
    return serial > 0n ? serial : serial === 0n ? undefined : 0n
  }

  /**
   * This instance reserved `oid` in the file for itself: no revision of it exists, and none will
   * but this instance's own commits (which are reported here).
   */
  reserved(oid: Oid): void {
    const i = Number(oid)
    if (i >= this.#serials.length && !this.#grow(i)) return
    if (this.#serials[i] === 0n) this.#serials[i] = NONE
  }

  /** Transaction `tid` wrote these oids (a deletion too: its row is the newest revision). */
  committed(tid: Tid, oids: readonly Oid[]): void {
    for (let i = 0; i < oids.length; i++) this.#learn(oids[i]!, tid)
  }

  /**
   * A load found `serial` as the newest revision of `oid` before `snapshot` (INT64 max: the
   * newest in the file). It is the current one unless a commit at or after `snapshot` changed
   * the object, which is reported here only if it came after the floor.
   */
  loaded(oid: Oid, serial: Tid, snapshot: Tid): void {
    if (snapshot > this.#floor) this.#learn(oid, serial)
  }

  /** Forget everything (a pack may have removed revisions): only commits after `newest` count. */
  reset(newest: Tid): void {
    this.#serials.fill(0n)
    this.#floor = newest
  }

  #learn(oid: Oid, serial: Tid): void {
    const i = Number(oid) // inexact only far beyond the table
    if (i >= this.#serials.length && !this.#grow(i)) return
    const serials = this.#serials
    if (serial > serials[i]!) serials[i] = serial
  }

  /** Make room for index `i`; false if it is beyond maxOid. */
  #grow(i: number): boolean {
    if (i >= this.#maxOid) return false
    let length = this.#serials.length * 2
    while (length <= i) length *= 2
    const bigger = new BigInt64Array(Math.min(length, this.#maxOid))
    bigger.set(this.#serials)
    this.#serials = bigger
    return true
  }
}
