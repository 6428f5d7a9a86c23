// Three-way merge of bucket states: the conflict resolution that lets two connections change
// one bucket concurrently (different keys inserted, deleted or changed) and both commit.
//
// Inputs are the bucket's contents as of the transaction both writers started from (`old`),
// as the other writer committed it (`committed`) and as this writer wants it (`mine`), each a
// sorted list of keys with parallel values (no values for sets). The merge walks the three lists
// together; a change only one side made is taken, the same change on both sides is a conflict
// (we cannot know that both meant it once), and so are changes the merge cannot place safely:
// a split (the next-bucket link changed), an emptied bucket, a deleted first key (it may be the
// parent's separator). The rules are those of ZODB's BTrees, written anew.

export type MergeConflictReason =
  | 'bucket split'
  | 'conflicting changes'
  | 'delete racing a change'
  | 'conflicting inserts'
  | 'conflicting deletes'
  | 'empty bucket'
  | 'internal node changed'
  | 'first key deleted'
  | 'keys of different kinds'

const explanations: Record<MergeConflictReason, string> = {
  'bucket split': 'the bucket was split (its next-bucket link changed) in one of the transactions',
  'conflicting changes': 'both transactions changed the value of the same key differently',
  'delete racing a change': 'one transaction deleted a key whose value the other changed',
  'conflicting inserts': 'both transactions inserted the same key',
  'conflicting deletes': 'both transactions deleted the same key',
  'empty bucket': 'a transaction emptied the bucket, which only its parent can unlink',
  'internal node changed': 'both transactions changed an internal node of the tree',
  'first key deleted': 'the first key of the bucket was deleted, which changes the parent node',
  'keys of different kinds': 'the transactions left keys of different kinds (a string and a number, say), which cannot share a tree',
}

/** Raised when two states of a bucket cannot be merged; `reason` says why, `key` where (if known). */
export class BucketMergeConflict extends Error {
  override name = 'BucketMergeConflict'
  constructor(
    readonly reason: MergeConflictReason,
    readonly key?: unknown,
  ) {
    super(`cannot merge concurrent changes: ${explanations[reason]}`)
  }
}

/** Contents of a bucket, as the merge sees them. `values` is absent for sets. */
export interface BucketContents<K, V> {
  keys: readonly K[]
  values?: readonly V[]
}

/** A cursor over one of the three inputs. */
class Cursor<K, V> {
  i = 0
  constructor(readonly contents: BucketContents<K, V>) {}
  get active(): boolean {
    return this.i < this.contents.keys.length
  }
  get key(): K {
    return this.contents.keys[this.i]!
  }
  get value(): V | undefined {
    return this.contents.values?.[this.i]
  }
}

/**
 * Merge `committed` and `mine`, both derived from `old`. `equals` decides whether two values are
 * the same (for persistent objects: the same object). Throws BucketMergeConflict.
 */
export function mergeBuckets<K, V>(
  old: BucketContents<K, V>,
  committed: BucketContents<K, V>,
  mine: BucketContents<K, V>,
  compare: (a: K, b: K) => number,
  equals: (a: V | undefined, b: V | undefined) => boolean = Object.is,
): { keys: K[]; values: V[] | undefined } {
  if (committed.keys.length === 0 || mine.keys.length === 0) throw new BucketMergeConflict('empty bucket')
  const isSet = old.values === undefined && committed.values === undefined && mine.values === undefined
  const o = new Cursor(old)
  const c = new Cursor(committed)
  const m = new Cursor(mine)
  const keys: K[] = []
  const values: V[] = []
  const emit = (key: K, value: V | undefined) => {
    keys.push(key)
    if (!isSet) values.push(value as V)
  }
  const take = (cur: Cursor<K, V>) => {
    emit(cur.key, cur.value)
    cur.i++
  }

  while (o.active && c.active && m.active) {
    const oc = compare(o.key, c.key)
    const om = compare(o.key, m.key)
    if (oc === 0 && om === 0) {
      // The key survives on both sides: take whichever side changed its value.
      if (equals(c.value, o.value)) emit(o.key, m.value)
      else if (equals(m.value, o.value)) emit(o.key, c.value)
      else throw new BucketMergeConflict('conflicting changes', o.key)
      o.i++
      c.i++
      m.i++
    } else if (oc === 0) {
      if (om > 0) {
        take(m) // inserted by mine before the old key
      } else if (equals(o.value, c.value)) {
        // deleted by mine, untouched by committed
        if (m.i === 0) throw new BucketMergeConflict('first key deleted', o.key)
        o.i++
        c.i++
      } else {
        throw new BucketMergeConflict('delete racing a change', o.key)
      }
    } else if (om === 0) {
      if (oc > 0) {
        take(c) // inserted by committed before the old key
      } else if (equals(o.value, m.value)) {
        // deleted by committed, untouched by mine
        if (c.i === 0) throw new BucketMergeConflict('first key deleted', o.key)
        o.i++
        m.i++
      } else {
        throw new BucketMergeConflict('delete racing a change', o.key)
      }
    } else {
      // Neither side has the old key here: both deleted it, or something was inserted before it.
      if (oc < 0 && om < 0) throw new BucketMergeConflict('conflicting deletes', o.key)
      const cm = compare(c.key, m.key)
      if (cm === 0) throw new BucketMergeConflict('conflicting inserts', c.key)
      take(cm > 0 ? m : c)
    }
  }

  // `old` ran out: what is left on both sides are inserts.
  while (c.active && m.active) {
    const cm = compare(c.key, m.key)
    if (cm === 0) throw new BucketMergeConflict('conflicting inserts', c.key)
    take(cm > 0 ? m : c)
  }
  // `mine` ran out: it deleted the rest of old; committed may only have inserted there.
  while (o.active && c.active) {
    const oc = compare(o.key, c.key)
    if (oc > 0) take(c)
    else if (oc === 0 && equals(o.value, c.value)) {
      o.i++
      c.i++
    } else throw new BucketMergeConflict(oc === 0 ? 'delete racing a change' : 'conflicting deletes', o.key)
  }
  // `committed` ran out: the mirror image.
  while (o.active && m.active) {
    const om = compare(o.key, m.key)
    if (om > 0) take(m)
    else if (om === 0 && equals(o.value, m.value)) {
      o.i++
      m.i++
    } else throw new BucketMergeConflict(om === 0 ? 'delete racing a change' : 'conflicting deletes', o.key)
  }
  if (o.active) throw new BucketMergeConflict('conflicting deletes', o.key)
  while (c.active) take(c)
  while (m.active) take(m)
  if (keys.length === 0) throw new BucketMergeConflict('empty bucket')
  return { keys, values: isSet ? undefined : values }
}
