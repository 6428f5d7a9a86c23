// A connection's object cache: one object per oid (identity is kept while anyone holds it),
// active objects held strongly in least-recently-used order, ghosts held only weakly so that
// unreferenced ones are collected (a ghost made during a transaction from its next boundary
// on). `incrgc()` makes the oldest up-to-date objects ghosts until both limits (object count
// and estimated bytes) are met; changed and sticky objects are never evicted. "Recently used"
// means loaded, changed or added: reads of active objects are not tracked, that would cost
// every attribute read.

import { CHANGED, GHOST, STICKY, type Persistent, _ghostify, _meta } from './persistent.js'
import type { Oid } from './tid.js'

export interface CacheLimits {
  /** Target number of active (non-ghost) objects. */
  cacheSize: number
  /** Target estimated bytes of active objects (0: no byte limit). */
  cacheSizeBytes: number
}

/** How an entry held weakly is told from an object held strongly (no instanceof: see isWeak). */
const WEAK_REF_PROTOTYPE: object = WeakRef.prototype

/**
 * Whether a cache entry is a weak reference. Its own prototype, not `instanceof`: a miss of
 * `instanceof` on a persistent object walks its chain through the prototype hook (a Proxy).
 */
function isWeak(entry: Persistent | WeakRef<Persistent>): entry is WeakRef<Persistent> {
  return Object.getPrototypeOf(entry) === WEAK_REF_PROTOTYPE
}

export class ObjectCache {
  /**
   * Every object the cache knows, by oid: the object itself while it is active or a young ghost,
   * its weak reference once it is an older ghost. One map, so that finding an object, or finding
   * that there is none, is one look-up (with a map each for active objects, young ghosts and weak
   * references, a cold read's new ghost cost three misses and its load a delete and two more).
   */
  readonly #entries = new Map<Oid, Persistent | WeakRef<Persistent>>()
  /**
   * Ghosts made since the last `incrgc()` (or since this list last reached the cache size), held
   * strongly (by #entries) until then: most are loaded soon (a bucket's objects as an iteration
   * reaches them) and then never need a weak reference, whose making costs more than the load's
   * bookkeeping. The rest get theirs at the next `incrgc()`, as every transaction boundary calls
   * it. Entries loaded or replaced meanwhile are skipped then.
   */
  #young: Persistent[] = []
  /**
   * Active objects in the order they took their place, a queue. Slot positions count up from
   * the first slot ever made (#lruBase is the position of #lru[0]); an object's `lruTick` is
   * 2 * position + 2, so it names its slot, and a use stamps `usedTick` with an odd number
   * above every slot's tick: "used since it took its place" is `usedTick > lruTick`. A slot is
   * emptied when its object leaves its place (the queue must not keep ghosts alive). Moving an
   * object to the end at every use (a delete and a set in a map of 100k entries, 5-10% of a
   * commit) is left to `incrgc`, which gives an object used since it took its place a second
   * chance at the end instead of evicting it. Eviction order is thus least recently used, as far
   * as it matters.
   */
  #lru: Array<Persistent | null> = []
  #lruBase = 0
  /** The first slot of #lru still to look at (those before it are empty). */
  #lruHead = 0
  /** While incrgc walks #lru: the slots it passes are emptied when it is done. */
  #walking = false
  #activeCount = 0
  #bytes = 0
  /**
   * Entries of collected objects are dropped by a sweep when #entries has grown to twice its size
   * after the last sweep (amortized O(1) per entry), and when `size` is asked. A
   * FinalizationRegistry did this per object, at a cost measured at about a tenth of a cold read.
   */
  #sweepAt = 1024

  constructor(public limits: CacheLimits) {}

  get(oid: Oid): Persistent | undefined {
    const entry = this.#entries.get(oid)
    if (entry === undefined) return undefined
    return isWeak(entry) ? entry.deref() : entry
  }

  /**
   * Add an active object whose oid the storage just handed out (no object can be cached under
   * it): `add` without the look-up.
   */
  addNew(obj: Persistent): void {
    const meta = _meta(obj)
    if (meta.lruTick !== 0 || meta.oid === null) {
      this.accessed(obj)
      return
    }
    this.#entries.set(meta.oid, obj)
    this.#takePlace(obj)
  }

  /** Add a ghost the caller just made for an oid that `get` did not find: `add` without the look-up. */
  addGhost(obj: Persistent): void {
    this.#entries.set(_meta(obj).oid!, obj)
    this.#addYoung(obj)
  }

  /** Add `obj` under its oid (it must not be cached under that oid already). */
  add(obj: Persistent): void {
    const meta = _meta(obj)
    const oid = meta.oid!
    const existing = this.get(oid)
    if (existing !== undefined && existing !== obj) throw new Error(`object cache: another object is cached under oid ${oid}`)
    if (meta.state !== GHOST) {
      this.accessed(obj)
    } else if (existing === undefined) {
      this.#entries.set(oid, obj)
      this.#addYoung(obj)
    }
  }

  delete(oid: Oid): void {
    const entry = this.#entries.get(oid)
    if (entry === undefined) return
    this.#entries.delete(oid)
    const obj = isWeak(entry) ? entry.deref() : entry
    if (obj !== undefined) this.#leavePlace(obj)
  }

  /** `obj` was loaded, changed or added: it is the most recently used. */
  accessed(obj: Persistent): void {
    const meta = _meta(obj)
    const oid = meta.oid
    if (oid === null) return
    if (meta.lruTick !== 0) {
      // Active here already (the only object under its oid): stamp it, count its size again.
      meta.usedTick = 2 * (this.#lruBase + this.#lru.length) + 1
      this.#bytes += meta.size - meta.cachedSize
      meta.cachedSize = meta.size
      return
    }
    // Held strongly from now on (a young ghost's entry is the object already; set is one probe).
    this.#entries.set(oid, obj)
    this.#takePlace(obj)
  }

  /** `obj`'s estimated size changed (it was stored): count it again, without counting a use. */
  recount(obj: Persistent): void {
    const meta = _meta(obj)
    if (meta.lruTick === 0) {
      this.accessed(obj)
      return
    }
    this.#bytes += meta.size - meta.cachedSize
    meta.cachedSize = meta.size
  }

  /** `obj` became a ghost: hold it weakly only. */
  ghostified(obj: Persistent): void {
    const meta = _meta(obj)
    const oid = meta.oid
    // A non-zero lruTick says the object itself is active here (no look-up to find out).
    if (oid === null || meta.lruTick === 0) return
    this.#leavePlace(obj)
    this.#holdWeakly(oid, obj)
  }

  /** `obj` (not active here) takes the last place in the LRU order, counted. */
  #takePlace(obj: Persistent): void {
    const meta = _meta(obj)
    meta.lruTick = meta.usedTick = 2 * (this.#lruBase + this.#lru.length) + 2
    this.#lru.push(obj)
    this.#activeCount++
    this.#bytes += meta.size
    meta.cachedSize = meta.size
    // Stale slots (objects made ghosts or moved) are dropped once they outnumber the others.
    if (this.#lru.length - this.#lruHead > 2 * this.#activeCount + 1024) this.#compactLru()
  }

  /** `obj` is no longer active here: its slot is emptied, it is no longer counted. */
  #leavePlace(obj: Persistent): void {
    const meta = _meta(obj)
    const tick = meta.lruTick
    if (tick === 0) return
    meta.lruTick = 0
    this.#activeCount--
    this.#bytes -= meta.cachedSize
    if (this.#walking) return
    const i = tick / 2 - 1 - this.#lruBase
    if (i >= this.#lruHead && i < this.#lru.length && this.#lru[i] === obj) this.#lru[i] = null
  }

  /** Whether #lru[i] holds its object's current place. */
  #current(obj: Persistent | null | undefined, i: number): obj is Persistent {
    return obj !== null && obj !== undefined && _meta(obj).lruTick === 2 * (this.#lruBase + i) + 2
  }

  /** Drop the empty slots: the objects take new places, in the same order, uses kept. */
  #compactLru(): void {
    const lru: Persistent[] = []
    for (let i = this.#lruHead; i < this.#lru.length; i++) {
      const obj = this.#lru[i]
      if (!this.#current(obj, i)) continue
      const meta = _meta(obj)
      const used = meta.usedTick > meta.lruTick
      meta.lruTick = 2 * lru.length + 2
      meta.usedTick = used ? meta.lruTick + 1 : meta.lruTick
      lru.push(obj)
    }
    this.#lru = lru
    this.#lruBase = 0
    this.#lruHead = 0
  }

  #addYoung(obj: Persistent): void {
    if (this.#young.length >= Math.max(1000, this.limits.cacheSize)) this.#flushYoung()
    this.#young.push(obj)
  }

  #holdWeakly(oid: Oid, obj: Persistent): void {
    // An object's weak reference is made once and kept on it: one that had one before (loaded
    // again since) finds it there.
    const meta = _meta(obj)
    const ref = (meta.weakRef ??= new WeakRef(obj)) as WeakRef<Persistent>
    if (this.#entries.size >= this.#sweepAt) this.#sweep()
    this.#entries.set(oid, ref)
  }

  /** Young ghosts still ghosts (and still this cache's entries) get their weak references. */
  #flushYoung(): void {
    const young = this.#young
    this.#young = []
    for (const obj of young) {
      const meta = _meta(obj)
      if (meta.state === GHOST && meta.lruTick === 0 && this.#entries.get(meta.oid!) === obj) this.#holdWeakly(meta.oid!, obj)
    }
  }

  /** Forget the entries of collected objects. */
  #sweep(): void {
    for (const [oid, entry] of this.#entries) if (isWeak(entry) && entry.deref() === undefined) this.#entries.delete(oid)
    this.#sweepAt = Math.max(1024, this.#entries.size * 2)
  }

  /** Number of objects the cache knows (ghosts included, until collected). */
  get size(): number {
    this.#sweep()
    let n = 0
    for (const entry of this.#entries.values()) if (!isWeak(entry) || entry.deref() !== undefined) n++
    return n
  }

  /** Number of active (non-ghost) objects. */
  get activeCount(): number {
    return this.#activeCount
  }

  /** Estimated bytes of the active objects. */
  get activeBytes(): number {
    return this.#bytes
  }

  /** The active objects, least recently placed first. */
  #activeObjects(): Persistent[] {
    const out: Persistent[] = []
    for (let i = this.#lruHead; i < this.#lru.length; i++) {
      const obj = this.#lru[i]
      if (this.#current(obj, i)) out.push(obj)
    }
    return out
  }

  /** Make least recently used up-to-date objects ghosts until the limits are met. */
  incrgc(): void {
    const { cacheSize, cacheSizeBytes } = this.limits
    const over = () => this.#activeCount > cacheSize || (cacheSizeBytes > 0 && this.#bytes > cacheSizeBytes)
    if (this.#young.length > 0) this.#flushYoung()
    if (!over()) return
    // Walk the queue from its oldest slot. A slot moved to the end comes again later in the same
    // walk (the queue grows as it is walked), and is then evicted if need be. Objects kept
    // (changed, sticky) go back in front, in their order, for the next time.
    const lru = this.#lru
    const kept: Persistent[] = []
    const head = this.#lruHead
    let i = head
    this.#walking = true
    try {
      for (; i < lru.length && over(); i++) {
        const obj = lru[i]
        if (!this.#current(obj, i)) continue
        const meta = _meta(obj)
        if (meta.usedTick > meta.lruTick) {
          // Used since it took its place: to the end, as a move at the time of use would have done.
          meta.lruTick = meta.usedTick = 2 * (this.#lruBase + lru.length) + 2
          lru.push(obj)
          continue
        }
        const state = meta.state
        if (state !== CHANGED && state !== STICKY) obj._p_deactivate()
        if (meta.lruTick !== 0) kept.push(obj)
      }
    } finally {
      this.#walking = false
    }
    // Slots before i are consumed: emptied, and the kept objects take the last of them.
    for (let k = head; k < i; k++) lru[k] = null
    i -= kept.length
    for (let k = 0; k < kept.length; k++) {
      const meta = _meta(kept[k]!)
      lru[i + k] = kept[k]!
      meta.lruTick = meta.usedTick = 2 * (this.#lruBase + i + k) + 2
    }
    this.#lruHead = i
    if (i > 1024 && i > lru.length >> 1) {
      // Most of the queue is consumed: drop those slots (positions stay as they are).
      this.#lru = lru.slice(i)
      this.#lruBase += i
      this.#lruHead = 0
    }
  }

  /** Make every up-to-date object a ghost. */
  minimize(): void {
    for (const obj of this.#activeObjects()) {
      if (_meta(obj).state !== CHANGED && _meta(obj).state !== STICKY) obj._p_deactivate()
    }
  }

  /** Every cached object that is still alive. */
  *objects(): IterableIterator<Persistent> {
    for (const entry of [...this.#entries.values()]) {
      const obj = isWeak(entry) ? entry.deref() : entry
      if (obj !== undefined) yield obj
    }
  }

  /** Forget every object, making the active ones ghosts first. */
  clear(): void {
    for (const obj of this.objects()) if (_meta(obj).state !== GHOST) _ghostify(obj)
    for (const obj of this.#activeObjects()) _meta(obj).lruTick = 0
    this.#entries.clear()
    this.#young = []
    this.#lru = []
    this.#lruBase = 0
    this.#lruHead = 0
    this.#activeCount = 0
    this.#bytes = 0
  }
}
