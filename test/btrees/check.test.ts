// check() finds and names broken invariants.
import { expect } from 'chai'
import { BTreeIntegrityError, IIBTree, IITreeSet, OOBucket, check, type BTree } from '@wendelin/btrees'

type Internals = {
  _keys: unknown[] | null
  _values: unknown[] | null
  _children: Internals[] | null
  _separators: unknown[] | null
  _next: Internals | null
  _length: { value: number } | null
}
const internals = (t: unknown) => t as Internals

function bigTree(n = 2000): BTree<number, number> {
  const t = new IIBTree(undefined, { trackLength: true })
  for (let i = 0; i < n; i++) t.set(i, i)
  return t
}

describe('check()', () => {
  it('returns the number of keys of a healthy collection', () => {
    expect(check(bigTree())).to.equal(2000)
    expect(check(new IITreeSet([1, 2, 3]))).to.equal(3)
    expect(check(new OOBucket())).to.equal(0)
  })

  const damages: Array<[string, (t: Internals) => void, RegExp]> = [
    ['keys out of order in a bucket', (t) => internals(t._children![1])._keys!.reverse(), /keys out of order/],
    ['a key outside its parent’s range', (t) => (internals(t._children![1])._keys![0] = -5), /below its parent's separator/],
    ['values missing', (t) => internals(t._children![0])._values!.pop(), /keys but .* values/],
    ['separators out of order', (t) => t._separators!.reverse(), /separators out of order|below its parent/],
    ['a separator count that does not match', (t) => t._separators!.pop(), /children but .* separators/],
    ['a broken bucket chain', (t) => (internals(t._children![0])._next = internals(t._children![2])), /next-bucket link/],
    ['a chain that runs past the last bucket', (t) => (internals(t._children!.at(-1))._next = internals(t._children![0])), /last bucket links/],
    ['an empty bucket', (t) => {
      const b = internals(t._children![1])
      b._keys!.length = 0
      b._values!.length = 0
    }, /an empty bucket/],
    ['a wrong Length', (t) => (t._length!.value += 1), /the Length says/],
  ]
  for (const [what, damage, message] of damages) {
    it(`names ${what}`, () => {
      const t = bigTree()
      damage(internals(t))
      expect(() => check(t)).to.throw(BTreeIntegrityError, message)
    })
  }
})
