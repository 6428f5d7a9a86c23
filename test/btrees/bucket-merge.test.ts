// Three-way merge of bucket contents (the reference rules of BTrees' conflict resolution).
import { expect } from 'chai'
import { BucketMergeConflict, mergeBuckets, type MergeConflictReason } from '@wendelin/btrees'

type Pairs = Array<[number, string]>
const cmp = (a: number, b: number) => a - b
const map = (pairs: Pairs) => ({ keys: pairs.map(([k]) => k), values: pairs.map(([, v]) => v) })
const set = (keys: number[]) => ({ keys })

function merge(old: Pairs, committed: Pairs, mine: Pairs) {
  const r = mergeBuckets(map(old), map(committed), map(mine), cmp)
  return r.keys.map((k, i) => [k, r.values![i]])
}

function conflict(old: Pairs, committed: Pairs, mine: Pairs): MergeConflictReason {
  try {
    mergeBuckets(map(old), map(committed), map(mine), cmp)
  } catch (e) {
    expect(e).to.be.instanceOf(BucketMergeConflict)
    return (e as BucketMergeConflict).reason
  }
  throw new Error('expected a merge conflict')
}

const base: Pairs = [[10, 'a'], [20, 'b'], [30, 'c'], [40, 'd']]

describe('mergeBuckets', () => {
  it('merges inserts of different keys from both sides, in order', () => {
    expect(merge(base, [...base.slice(0, 2), [25, 'x'], ...base.slice(2)], [[5, 'y'], ...base, [50, 'z']])).to.deep.equal([
      [5, 'y'], [10, 'a'], [20, 'b'], [25, 'x'], [30, 'c'], [40, 'd'], [50, 'z'],
    ])
  })

  it('merges changes to different keys', () => {
    const committed: Pairs = [[10, 'a'], [20, 'B'], [30, 'c'], [40, 'd']]
    const mine: Pairs = [[10, 'a'], [20, 'b'], [30, 'c'], [40, 'D']]
    expect(merge(base, committed, mine)).to.deep.equal([[10, 'a'], [20, 'B'], [30, 'c'], [40, 'D']])
  })

  it('merges deletes of different keys (not the first)', () => {
    const committed: Pairs = [[10, 'a'], [30, 'c'], [40, 'd']]
    const mine: Pairs = [[10, 'a'], [20, 'b'], [30, 'c']]
    expect(merge(base, committed, mine)).to.deep.equal([[10, 'a'], [30, 'c']])
  })

  it('merges a delete on one side with an insert on the other', () => {
    const committed: Pairs = [[10, 'a'], [20, 'b'], [40, 'd']]
    const mine: Pairs = [[10, 'a'], [20, 'b'], [30, 'c'], [35, 'n'], [40, 'd']]
    expect(merge(base, committed, mine)).to.deep.equal([[10, 'a'], [20, 'b'], [35, 'n'], [40, 'd']])
  })

  it('merges when one side deleted the tail and the other inserted after it', () => {
    const committed: Pairs = [[10, 'a'], [20, 'b'], [30, 'c'], [40, 'd'], [45, 'e']]
    const mine: Pairs = [[10, 'a'], [20, 'b']]
    expect(merge(base, committed, mine)).to.deep.equal([[10, 'a'], [20, 'b'], [45, 'e']])
  })

  it('takes one side’s change when the other did not touch the bucket', () => {
    expect(merge(base, base, [[10, 'A'], [20, 'b'], [30, 'c'], [40, 'd']])).to.deep.equal([[10, 'A'], [20, 'b'], [30, 'c'], [40, 'd']])
  })

  describe('conflicts', () => {
    it('the same key changed on both sides (even to the same value)', () => {
      expect(conflict(base, [[10, 'a'], [20, 'X'], [30, 'c'], [40, 'd']], [[10, 'a'], [20, 'Y'], [30, 'c'], [40, 'd']])).to.equal('conflicting changes')
      expect(conflict(base, [[10, 'a'], [20, 'X'], [30, 'c'], [40, 'd']], [[10, 'a'], [20, 'X'], [30, 'c'], [40, 'd']])).to.equal('conflicting changes')
    })

    it('the same key inserted on both sides', () => {
      expect(conflict(base, [...base.slice(0, 2), [25, 'x'], ...base.slice(2)], [...base.slice(0, 2), [25, 'y'], ...base.slice(2)])).to.equal('conflicting inserts')
      expect(conflict(base, [...base, [50, 'x']], [...base, [50, 'y']])).to.equal('conflicting inserts')
    })

    it('a delete racing a change of the same key', () => {
      const changed: Pairs = [[10, 'a'], [20, 'X'], [30, 'c'], [40, 'd']]
      const deleted: Pairs = [[10, 'a'], [30, 'c'], [40, 'd']]
      expect(conflict(base, changed, deleted)).to.equal('delete racing a change')
      expect(conflict(base, deleted, changed)).to.equal('delete racing a change')
      const lastChanged: Pairs = [[10, 'a'], [20, 'b'], [30, 'c'], [40, 'X']]
      const lastDeleted: Pairs = [[10, 'a'], [20, 'b'], [30, 'c']]
      expect(conflict(base, lastChanged, lastDeleted)).to.equal('delete racing a change')
      expect(conflict(base, lastDeleted, lastChanged)).to.equal('delete racing a change')
    })

    it('the same key deleted on both sides', () => {
      const deleted: Pairs = [[10, 'a'], [30, 'c'], [40, 'd']]
      expect(conflict(base, deleted, deleted)).to.equal('conflicting deletes')
      const tail: Pairs = [[10, 'a'], [20, 'b'], [30, 'c']]
      expect(conflict(base, tail, tail)).to.equal('conflicting deletes')
    })

    it('the first key deleted (it may be the parent’s separator)', () => {
      const noFirst: Pairs = base.slice(1)
      expect(conflict(base, base.map(([k, v]) => [k, k === 40 ? 'X' : v]), noFirst)).to.equal('first key deleted')
      expect(conflict(base, noFirst, base.map(([k, v]) => [k, k === 40 ? 'X' : v]))).to.equal('first key deleted')
    })

    it('a side that emptied the bucket', () => {
      expect(conflict(base, [], [...base, [50, 'x']])).to.equal('empty bucket')
      expect(conflict(base, [...base, [50, 'x']], [])).to.equal('empty bucket')
    })
  })

  it('merges sets (keys only)', () => {
    const r = mergeBuckets(set([1, 2, 3]), set([1, 2, 3, 4]), set([0, 1, 2, 3]), cmp)
    expect(r.keys).to.deep.equal([0, 1, 2, 3, 4])
    expect(r.values).to.equal(undefined)
    expect(() => mergeBuckets(set([1, 2, 3]), set([1, 2, 3, 4]), set([1, 2, 3, 4]), cmp)).to.throw(BucketMergeConflict, /inserted the same key/)
  })

  it('uses the given value equality (persistent objects compare by identity of oid)', () => {
    const eqByOid = (a: { oid: number } | undefined, b: { oid: number } | undefined) => a?.oid === b?.oid
    const old = { keys: [1, 2], values: [{ oid: 1 }, { oid: 2 }] }
    const committed = { keys: [1, 2], values: [{ oid: 1 }, { oid: 9 }] } // new copies, same oid for key 1
    const mine = { keys: [1, 2, 3], values: [{ oid: 1 }, { oid: 2 }, { oid: 3 }] }
    const r = mergeBuckets(old, committed, mine, cmp, eqByOid)
    expect(r.values!.map((v) => v.oid)).to.deep.equal([1, 9, 3])
  })
})
