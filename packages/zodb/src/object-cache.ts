// A connection's object cache: one object per oid (identity is kept while anyone holds it),
// active objects held strongly in least-recently-used order, ghosts held only weakly so that
// unreferenced ones are collected. `incrgc()` makes the oldest up-to-date objects ghosts until
// both limits (object count and estimated bytes) are met; changed and sticky objects are never
// evicted. "Recently used" means loaded, changed or added: reads of active objects are not
// tracked, that would cost every attribute read.

import { CHANGED, GHOST, STICKY, type Persistent, _ghostify, _meta } from './persistent.js'
import type { Oid } from './tid.js'

export interface CacheLimits {
  /** Target number of active (non-ghost) objects. */
  cacheSize: number
  /** Target estimated bytes of active objects (0: no byte limit). */
  cacheSizeBytes: number
}

export class ObjectCache {
  readonly #refs = new Map<Oid, WeakRef<Persistent>>()
  /** Active objects, least recently used first, with the size counted for each in #bytes. */
  readonly #active = new Map<Oid, { obj: Persistent; size: number }>()
  #bytes = 0
  readonly #finalizer = new FinalizationRegistry<Oid>((oid) => {
    const ref = this.#refs.get(oid)
    if (ref !== undefined && ref.deref() === undefined) this.#refs.delete(oid)
  })

  constructor(public limits: CacheLimits) {}

  get(oid: Oid): Persistent | undefined {
    return this.#refs.get(oid)?.deref()
  }

  /** Add `obj` under its oid (it must not be cached under that oid already). */
  add(obj: Persistent): void {
    const oid = _meta(obj).oid!
    const existing = this.get(oid)
    if (existing !== undefined && existing !== obj) throw new Error(`object cache: another object is cached under oid ${oid}`)
    this.#refs.set(oid, new WeakRef(obj))
    this.#finalizer.register(obj, oid)
    if (_meta(obj).state !== GHOST) this.accessed(obj)
  }

  delete(oid: Oid): void {
    this.#refs.delete(oid)
    this.#removeActive(oid)
  }

  /** `obj` was loaded, changed or added: it is the most recently used. */
  accessed(obj: Persistent): void {
    const oid = _meta(obj).oid
    if (oid === null) return
    this.#removeActive(oid)
    const size = _meta(obj).size
    this.#active.set(oid, { obj, size })
    this.#bytes += size
  }

  /** `obj` became a ghost: hold it weakly only. */
  ghostified(obj: Persistent): void {
    const oid = _meta(obj).oid
    if (oid !== null) this.#removeActive(oid)
  }

  #removeActive(oid: Oid): void {
    const prev = this.#active.get(oid)
    if (prev !== undefined) {
      this.#active.delete(oid)
      this.#bytes -= prev.size
    }
  }

  /** Number of objects the cache knows (ghosts included, until collected). */
  get size(): number {
    return this.#refs.size
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
    if (!over()) return
    for (const { obj } of [...this.#active.values()]) {
      if (!over()) break
      const state = _meta(obj).state
      if (state === CHANGED || state === STICKY) continue
      obj._p_deactivate()
    }
  }

  /** Make every up-to-date object a ghost. */
  minimize(): void {
    for (const { obj } of [...this.#active.values()]) {
      if (_meta(obj).state !== CHANGED && _meta(obj).state !== STICKY) obj._p_deactivate()
    }
  }

  /** Every cached object that is still alive. */
  *objects(): IterableIterator<Persistent> {
    for (const ref of this.#refs.values()) {
      const obj = ref.deref()
      if (obj !== undefined) yield obj
    }
  }

  /** Forget every object, making the active ones ghosts first. */
  clear(): void {
    for (const obj of this.objects()) if (_meta(obj).state !== GHOST) _ghostify(obj)
    this.#refs.clear()
    this.#active.clear()
    this.#bytes = 0
  }
}
