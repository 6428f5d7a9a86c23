// An iterable set of weakly held objects. JavaScript's WeakSet cannot be iterated, and a
// transaction manager must be able to call every registered synchronizer without keeping any of
// them alive (a connection that is dropped without close() must still be collectable).

export class IterableWeakSet<T extends object> implements Iterable<T> {
  readonly #refs = new Set<WeakRef<T>>()
  readonly #refOf = new WeakMap<T, WeakRef<T>>()
  readonly #registry = new FinalizationRegistry<WeakRef<T>>((ref) => this.#refs.delete(ref))

  add(item: T): this {
    if (!this.#refOf.has(item)) {
      const ref = new WeakRef(item)
      this.#refOf.set(item, ref)
      this.#refs.add(ref)
      this.#registry.register(item, ref, ref)
    }
    return this
  }

  has(item: T): boolean {
    return this.#refOf.has(item)
  }

  delete(item: T): boolean {
    const ref = this.#refOf.get(item)
    if (ref === undefined) return false
    this.#refOf.delete(item)
    this.#refs.delete(ref)
    this.#registry.unregister(ref)
    return true
  }

  clear(): void {
    for (const item of this) this.delete(item)
  }

  /** Number of members still alive. */
  get size(): number {
    let n = 0
    for (const _ of this) n++
    return n
  }

  /** Live members, snapshotted first so that callbacks may add or remove members safely. */
  *[Symbol.iterator](): Iterator<T> {
    const live: T[] = []
    for (const ref of this.#refs) {
      const item = ref.deref()
      if (item !== undefined) live.push(item)
    }
    yield* live
  }
}
