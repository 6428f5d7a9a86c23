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

/** How the maps below key an oid. */
type Key = number | bigint
const MAX_NUMBER_KEY = BigInt(Number.MAX_SAFE_INTEGER)
/**
 * An oid as a map key: a number when it is exact as one (always, in practice). Maps of 100k
 * objects are bigger than the CPU caches; a bigint key is an object of its own, read to compare
 * at every look-up (one more cache miss), where a small number sits in the map's table itself.
 */
function keyOf(oid: Oid): Key {
  return oid <= MAX_NUMBER_KEY ? Number(oid) : oid
}

export class ObjectCache {
  /**
   * Weak references to objects that became ghosts (or were made as ghosts). An active object is
   * held by #active, and gets its weak reference only when it becomes a ghost: most new objects
   * of a big commit never need one.
   */
  readonly #refs = new Map<Key, WeakRef<Persistent>>()
  /**
   * Ghosts made since the last `incrgc()` (or since this map last reached the cache size), held
   * strongly until then: most are loaded soon (a bucket's objects as an iteration reaches them)
   * and then never need a weak reference, whose making costs more than the load's bookkeeping.
   * The rest get theirs at the next `incrgc()`, as every transaction boundary calls it. A loaded
   * one leaves at its load: the map stays as small as the ghosts not loaded yet (kept until the
   * boundary, loaded ones made it a map of 100k entries in a cold read, slower to add to).
   */
  readonly #young = new Map<Key, Persistent>()
  /**
   * Active objects, in the order they took their place (each one's `lruTick`); each one's
   * counted size is its meta's `cachedSize`. A use only stamps the object (`usedTick`): moving
   * it to the end of this map at every use (a delete and a set in a map of 100k entries, 5-10% of
   * a commit) is left to `incrgc`, which gives an object used since it took its place a second
   * chance at the end instead of evicting it. Eviction order is thus least recently used, as
   * far as it matters.
   */
  readonly #active = new Map<Key, Persistent>()
  #bytes = 0
  #clock = 0
  /**
   * Entries of collected objects are dropped by a sweep when #refs has grown to twice its size
   * after the last sweep (amortized O(1) per entry), and when `size` is asked. A
   * FinalizationRegistry did this per object, at a cost measured at about a tenth of a cold read.
   */
  #sweepAt = 1024
  /**
   * Not below any number key the maps have held: `get` of a larger one answers without looking.
   * Oids are handed out in increasing order, so most ghosts a cold read makes (a bucket's values,
   * new to the cache) come in above it; each was three misses in maps of up to 100k entries, each
   * a cache miss or more. Infinity once a bigint key was held (oids past 2^53: never in practice).
   */
  #maxKey = -1

  constructor(public limits: CacheLimits) {}

  get(oid: Oid): Persistent | undefined {
    const key = keyOf(oid)
    if (typeof key === 'number' && key > this.#maxKey) return undefined
    const active = this.#active.get(key)
    if (active !== undefined) return active
    const young = this.#young.get(key)
    if (young !== undefined) return young
    return this.#refs.get(key)?.deref()
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
    // A fresh oid is in none of the maps: no look-ups (a tenth of a new object's cache cost).
    const key = keyOf(meta.oid)
    this.#noteKey(key)
    this.#active.set(key, obj)
    meta.lruTick = meta.usedTick = ++this.#clock
    this.#bytes += meta.size
    meta.cachedSize = meta.size
  }

  /** Add a ghost the caller just made for an oid that `get` did not find: `add` without the look-up. */
  addGhost(obj: Persistent): void {
    if (this.#young.size >= Math.max(1000, this.limits.cacheSize)) this.#flushYoung()
    const key = keyOf(_meta(obj).oid!)
    this.#noteKey(key)
    this.#young.set(key, obj)
  }

  #noteKey(key: Key): void {
    if (typeof key !== 'number') this.#maxKey = Infinity
    else if (key > this.#maxKey) this.#maxKey = key
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
      if (this.#young.size >= Math.max(1000, this.limits.cacheSize)) this.#flushYoung()
      const key = keyOf(oid)
      this.#noteKey(key)
      this.#young.set(key, obj)
    }
  }

  delete(oid: Oid): void {
    const key = keyOf(oid)
    this.#refs.delete(key)
    this.#young.delete(key)
    this.#removeActive(key)
  }

  /** `obj` was loaded, changed or added: it is the most recently used. */
  accessed(obj: Persistent): void {
    const meta = _meta(obj)
    const oid = meta.oid
    if (oid === null) return
    const key = keyOf(oid)
    if (this.#young.size > 0) this.#young.delete(key)
    const tick = ++this.#clock
    if (meta.lruTick !== 0) {
      // In the map already (the only object there under its oid): stamp it, count its size again.
      meta.usedTick = tick
      this.#bytes += meta.size - meta.cachedSize
    } else {
      // Not in #active (a zero lruTick says so), nor any other object under its oid: the cache
      // holds one object per oid (`add` refuses another, `delete` takes it out of #active). No
      // look-up first: in a map of 100k entries each costs cache misses.
      this.#noteKey(key)
      this.#active.set(key, obj)
      meta.lruTick = meta.usedTick = tick
      this.#bytes += meta.size
    }
    meta.cachedSize = meta.size
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
    // A non-zero lruTick says the object itself is in #active (no look-up to find out).
    if (oid === null || meta.lruTick === 0) return
    const key = keyOf(oid)
    this.#active.delete(key)
    this.#bytes -= meta.cachedSize
    meta.lruTick = 0
    this.#holdWeakly(key, obj)
  }

  #holdWeakly(key: Key, obj: Persistent): void {
    // An object's weak reference is made once and kept on it: one that had one before (loaded
    // again since) finds it there, a new ghost makes one without looking the oid up first.
    const meta = _meta(obj)
    let ref = meta.weakRef as WeakRef<Persistent> | null
    if (ref !== null && this.#refs.get(key) === ref) return
    ref ??= meta.weakRef = new WeakRef(obj)
    if (this.#refs.size >= this.#sweepAt) this.#sweep()
    this.#noteKey(key)
    this.#refs.set(key, ref)
  }

  #removeActive(key: Key): void {
    const prev = this.#active.get(key)
    if (prev !== undefined) {
      this.#active.delete(key)
      const meta = _meta(prev)
      this.#bytes -= meta.cachedSize
      meta.lruTick = 0
    }
  }

  /** Young ghosts still ghosts get their weak references; the others are active already. */
  #flushYoung(): void {
    for (const [key, obj] of this.#young) if (_meta(obj).state === GHOST) this.#holdWeakly(key, obj)
    this.#young.clear()
  }

  /** Forget the entries of collected objects. */
  #sweep(): void {
    // forEach: a for-of over the entries made an array per entry (~70 bytes per evicted object
    // of a W-OBJ populate). Deleting the entry being visited is safe in either.
    this.#refs.forEach((ref, key, refs) => {
      if (ref.deref() === undefined) refs.delete(key)
    })
    this.#sweepAt = Math.max(1024, this.#refs.size * 2)
  }

  /** Number of objects the cache knows (ghosts included, until collected). */
  get size(): number {
    this.#sweep()
    let n = this.#active.size
    for (const [key, obj] of this.#young) if (this.#active.get(key) !== obj) n++
    for (const [key, ref] of this.#refs) {
      const obj = ref.deref()
      if (this.#active.get(key) !== obj && this.#young.get(key) !== obj) n++
    }
    return n
  }

  /** Number of active (non-ghost) objects. */
  get activeCount(): number {
    return this.#active.size
  }

  /** Estimated bytes of the active objects. */
  get activeBytes(): number {
    return this.#bytes
  }

  /** Make least recently used up-to-date objects ghosts until the limits are met. */
  incrgc(): void {
    const { cacheSize, cacheSizeBytes } = this.limits
    const over = () => this.#active.size > cacheSize || (cacheSizeBytes > 0 && this.#bytes > cacheSizeBytes)
    if (this.#young.size > 0) this.#flushYoung()
    if (!over()) return
    // Deleting entries already visited is safe while iterating a Map: no copy needed. An entry
    // moved to the end comes again later in the same loop, and is then evicted if need be.
    const active = this.#active
    // Each entry is visited at most twice (once more after a move). Objects loaded during the
    // scan (a `_p_deactivate` that reads its object again) join the end: without a bound the
    // scan would evict and reload them forever.
    let visits = 2 * active.size
    for (const obj of active.values()) {
      if (!over() || visits-- === 0) break
      const meta = _meta(obj)
      if (meta.usedTick > meta.lruTick) {
        // Used since it took its place: to the end, as a move at the time of use would have done.
        const key = keyOf(meta.oid!)
        active.delete(key)
        active.set(key, obj)
        meta.lruTick = meta.usedTick = ++this.#clock
        continue
      }
      const state = meta.state
      if (state === CHANGED || state === STICKY) continue
      obj._p_deactivate()
    }
  }

  /** Make every up-to-date object a ghost. */
  minimize(): void {
    for (const obj of [...this.#active.values()]) {
      if (_meta(obj).state !== CHANGED && _meta(obj).state !== STICKY) obj._p_deactivate()
    }
  }

  /** Every cached object that is still alive. */
  *objects(): IterableIterator<Persistent> {
    for (const obj of [...this.#active.values()]) yield obj
    for (const [key, obj] of [...this.#young]) if (this.#active.get(key) !== obj) yield obj
    for (const [key, ref] of [...this.#refs]) {
      const obj = ref.deref()
      if (obj !== undefined && this.#active.get(key) !== obj && this.#young.get(key) !== obj) yield obj
    }
  }

  /** Forget every object, making the active ones ghosts first. */
  clear(): void {
    for (const obj of this.objects()) if (_meta(obj).state !== GHOST) _ghostify(obj)
    for (const obj of this.#active.values()) _meta(obj).lruTick = 0
    this.#refs.clear()
    this.#young.clear()
    this.#active.clear()
    this.#bytes = 0
  }
}
