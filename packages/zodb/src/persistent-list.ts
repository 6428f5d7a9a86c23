// PersistentList: an Array-like persistent object that tracks its own mutations. Its state is
// `{ data: [...] }`. Elements are read with `at(i)`/`get(i)` and written with `set(i, v)`:
// `list[i] = v` would bypass the tracking (a Proxy would catch it, at the price of slowing every
// access of every persistent object).

import { registerClass } from './class-registry.js'
import { Persistent } from './persistent.js'

export class PersistentList<T = unknown> extends Persistent implements Iterable<T> {
  data: T[]

  constructor(items?: Iterable<T> | null) {
    super()
    this.data = items === null || items === undefined ? [] : [...items]
  }

  get length(): number {
    return this.data.length
  }
  at(index: number): T | undefined {
    return this.data.at(index)
  }
  get(index: number): T | undefined {
    return this.data[index]
  }
  set(index: number, value: T): void {
    // Any other index makes an array property, which is never stored: the change would be lost.
    if (!Number.isSafeInteger(index) || index < 0) throw new RangeError(`PersistentList.set: index ${index} is not a non-negative integer`)
    this._p_changed = true
    this.data[index] = value
  }
  push(...items: T[]): number {
    this._p_changed = true
    return this.data.push(...items)
  }
  pop(): T | undefined {
    if (this.data.length === 0) return undefined
    this._p_changed = true
    return this.data.pop()
  }
  shift(): T | undefined {
    if (this.data.length === 0) return undefined
    this._p_changed = true
    return this.data.shift()
  }
  unshift(...items: T[]): number {
    this._p_changed = true
    return this.data.unshift(...items)
  }
  splice(start: number, deleteCount?: number, ...items: T[]): T[] {
    this._p_changed = true
    // As Array.prototype.splice: only a missing deleteCount means "to the end" (an explicit undefined is 0).
    return arguments.length < 2 ? this.data.splice(start) : this.data.splice(start, deleteCount as number, ...items)
  }
  sort(compare?: (a: T, b: T) => number): this {
    this._p_changed = true
    this.data.sort(compare)
    return this
  }
  reverse(): this {
    this._p_changed = true
    this.data.reverse()
    return this
  }
  /** Remove every element. */
  clear(): void {
    if (this.data.length === 0) return
    this._p_changed = true
    this.data.length = 0
  }
  indexOf(item: T): number {
    return this.data.indexOf(item)
  }
  includes(item: T): boolean {
    return this.data.includes(item)
  }
  slice(start?: number, end?: number): T[] {
    return this.data.slice(start, end)
  }
  map<U>(fn: (item: T, index: number) => U): U[] {
    return this.data.map((x, i) => fn(x, i))
  }
  filter(fn: (item: T, index: number) => boolean): T[] {
    return this.data.filter((x, i) => fn(x, i))
  }
  forEach(fn: (item: T, index: number) => void): void {
    this.data.forEach((x, i) => fn(x, i))
  }
  toArray(): T[] {
    return [...this.data]
  }
  [Symbol.iterator](): IterableIterator<T> {
    return this.data[Symbol.iterator]()
  }
}

registerClass('zodb.PersistentList', PersistentList)
