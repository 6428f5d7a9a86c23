// Length: a persistent counter whose concurrent changes merge instead of conflicting, so a
// tree's size can be kept without making every insert conflict with every other.

import { Persistent, registerClass } from '@wendelin/zodb'

export class Length extends Persistent {
  value = 0

  constructor(initial = 0) {
    super()
    this.value = initial
  }

  /** Add `delta` (negative to subtract). */
  change(delta: number): void {
    if (!Number.isSafeInteger(delta)) throw new RangeError(`Length.change: an integer delta expected, got ${delta}`)
    if (delta !== 0) this.value += delta
  }

  set(value: number): void {
    if (!Number.isSafeInteger(value)) throw new RangeError(`Length.set: an integer expected, got ${value}`)
    this.value = value
  }

  override valueOf(): number {
    return this.value
  }

  /** Both transactions' changes count: committed + (mine - old). */
  override _p_resolveConflict(old: Record<string, unknown> | null, committed: Record<string, unknown>, mine: Record<string, unknown>): Record<string, unknown> {
    const base = old === null ? 0 : (old.value as number)
    return { ...committed, value: (committed.value as number) + (mine.value as number) - base }
  }
}

registerClass('btrees.Length', Length)
