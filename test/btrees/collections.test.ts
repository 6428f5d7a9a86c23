// Behaviours of BTrees' mapping, set, range, min/max, iteration and deletion suites, on
// collections that are not (yet) in a database: the algorithms alone.
import { expect } from 'chai'
import {
  BTreeKeyError,
  BTreeValueError,
  ConcurrentModificationError,
  IIBTree,
  IITreeSet,
  IOBTree,
  LLBTree,
  LOBTree,
  OOBTree,
  OOBucket,
  OOSet,
  OOTreeSet,
  check,
  pathTo,
  type BTree,
} from '@wendelin/btrees'

/** A deterministic pseudo-random sequence (xorshift), so failures reproduce. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x / 2 ** 32
  }
}

function shuffled<T>(items: T[], seed = 1): T[] {
  const r = rng(seed)
  const a = [...items]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1))
    ;[a[i], a[j]] = [a[j]!, a[i]!]
  }
  return a
}

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i)

describe('B-tree collections (in memory)', () => {
  describe('mapping behaviour (OOBTree, IOBTree, LOBTree, OOBucket)', () => {
    const makers: Array<[string, () => BTree<any, any> | InstanceType<typeof OOBucket>, (i: number) => unknown]> = [
      ['OOBTree with string keys', () => new OOBTree(), (i) => `k${String(i).padStart(6, '0')}`],
      ['IOBTree', () => new IOBTree(), (i) => i * 7 - 1000],
      ['LOBTree', () => new LOBTree(), (i) => BigInt(i) * 10n ** 12n],
      ['OOBucket', () => new OOBucket(), (i) => i],
    ]
    for (const [name, make, key] of makers) {
      describe(name, () => {
        it('sets, gets, replaces, deletes and counts', () => {
          const t = make() as BTree<unknown, unknown>
          expect(t.size).to.equal(0)
          expect(t.isEmpty()).to.equal(true)
          expect(t.get(key(1))).to.equal(undefined)
          expect(t.get(key(1), 'dflt')).to.equal('dflt')
          t.set(key(1), 'one')
          t.set(key(2), 'two')
          expect(t.get(key(1))).to.equal('one')
          expect(t.has(key(2))).to.equal(true)
          expect(t.has(key(3))).to.equal(false)
          t.set(key(1), 'uno')
          expect(t.get(key(1))).to.equal('uno')
          expect(t.size).to.equal(2)
          expect(t.delete(key(1))).to.equal(true)
          expect(t.delete(key(1))).to.equal(false)
          expect(t.size).to.equal(1)
          expect(t.isEmpty()).to.equal(false)
          check(t)
        })

        it('keeps many keys in order through splits, whatever the insertion order', () => {
          const t = make() as BTree<unknown, number>
          const n = 3000
          for (const i of shuffled(range(n), 7)) t.set(key(i), i)
          expect(check(t)).to.equal(n)
          expect(t.size).to.equal(n)
          expect([...t.values()]).to.deep.equal(range(n))
          expect([...t.keys()]).to.deep.equal(range(n).map(key))
          expect([...t.keys(undefined, undefined, { reverse: true })]).to.deep.equal(range(n).map(key).reverse())
          for (const i of shuffled(range(n), 8)) expect(t.get(key(i))).to.equal(i)
        })

        it('deletes down to empty (unlinking emptied buckets) and can grow again', () => {
          const t = make() as BTree<unknown, number>
          const n = 2000
          for (const i of range(n)) t.set(key(i), i)
          const order = shuffled(range(n), 3)
          for (let j = 0; j < n; j++) {
            expect(t.delete(key(order[j]!))).to.equal(true)
            if (j % 97 === 0) expect(check(t)).to.equal(n - j - 1)
          }
          expect(check(t)).to.equal(0)
          expect([...t.keys()]).to.deep.equal([])
          for (const i of range(100)) t.set(key(i), i)
          expect(check(t)).to.equal(100)
        })

        it('setdefault and pop', () => {
          const t = make() as BTree<unknown, unknown>
          expect(t.setdefault(key(5), 'a')).to.equal('a')
          expect(t.setdefault(key(5), 'b')).to.equal('a')
          expect(t.pop(key(5))).to.equal('a')
          expect(t.pop(key(5))).to.equal(undefined)
          expect(t.pop(key(5), 'gone')).to.equal('gone')
        })

        it('update() from pairs, a Map, and another mapping; clear()', () => {
          const t = make() as BTree<unknown, unknown>
          t.update([[key(1), 'a'], [key(2), 'b']])
          t.update(new Map([[key(3), 'c']]))
          const other = make() as BTree<unknown, unknown>
          other.update(t)
          expect([...other.entries()]).to.deep.equal([[key(1), 'a'], [key(2), 'b'], [key(3), 'c']])
          t.clear()
          expect(t.size).to.equal(0)
          expect(other.size).to.equal(3)
        })
      })
    }
  })

  describe('ranges', () => {
    const t = new IIBTree()
    for (let i = 0; i < 1000; i += 2) t.set(i, i * 10) // even keys 0..998
    const keys = (...args: Parameters<typeof t.keys>) => [...t.keys(...args)]

    it('inclusive bounds, present or absent', () => {
      expect(keys(10, 20)).to.deep.equal([10, 12, 14, 16, 18, 20])
      expect(keys(11, 19)).to.deep.equal([12, 14, 16, 18])
      expect(keys(990)).to.deep.equal([990, 992, 994, 996, 998])
      expect(keys(undefined, 4)).to.deep.equal([0, 2, 4])
      expect(keys(-100, -1)).to.deep.equal([])
      expect(keys(2000)).to.deep.equal([])
      expect(keys(20, 10)).to.deep.equal([])
    })

    it('exclusive bounds', () => {
      expect(keys(10, 20, { excludeMin: true })).to.deep.equal([12, 14, 16, 18, 20])
      expect(keys(10, 20, { excludeMax: true })).to.deep.equal([10, 12, 14, 16, 18])
      expect(keys(10, 20, { excludeMin: true, excludeMax: true })).to.deep.equal([12, 14, 16, 18])
      expect(keys(11, 19, { excludeMin: true, excludeMax: true })).to.deep.equal([12, 14, 16, 18])
      expect(keys(10, 10, { excludeMin: true })).to.deep.equal([])
    })

    it('reverse ranges, across buckets', () => {
      expect(keys(10, 20, { reverse: true })).to.deep.equal([20, 18, 16, 14, 12, 10])
      expect(keys(10, 20, { reverse: true, excludeMax: true, excludeMin: true })).to.deep.equal([18, 16, 14, 12])
      expect(keys(undefined, undefined, { reverse: true }).length).to.equal(500)
      const wide = keys(100, 900, { reverse: true })
      expect(wide[0]).to.equal(900)
      expect(wide.at(-1)).to.equal(100)
      expect(wide.length).to.equal(401)
    })

    it('values and entries take the same ranges', () => {
      expect([...t.values(0, 4)]).to.deep.equal([0, 20, 40])
      expect([...t.entries(994, undefined, { reverse: true })]).to.deep.equal([[998, 9980], [996, 9960], [994, 9940]])
    })

    it('minKey and maxKey, with and without a bound', () => {
      expect(t.minKey()).to.equal(0)
      expect(t.maxKey()).to.equal(998)
      expect(t.minKey(11)).to.equal(12)
      expect(t.minKey(12)).to.equal(12)
      expect(t.maxKey(11)).to.equal(10)
      expect(t.maxKey(10)).to.equal(10)
      expect(t.minKey(999)).to.equal(undefined)
      expect(t.maxKey(-1)).to.equal(undefined)
      expect(new IIBTree().minKey()).to.equal(undefined)
    })

    it('iterators are lazy and fail if the tree changes under them', () => {
      const tree = new IIBTree()
      for (let i = 0; i < 300; i++) tree.set(i, i)
      const it = tree.keys()
      expect(it.next().value).to.equal(0)
      tree.set(1000, 1)
      expect(() => it.next()).to.throw(ConcurrentModificationError, /changed while it was being iterated/)
      const it2 = tree.keys()
      it2.next()
      tree.set(5, 5) // same value: no change
      expect(it2.next().value).to.equal(1)
    })

    it('an iterator goes on when another collection changes, and still fails when its own does', () => {
      const tree = new IIBTree()
      const other = new IIBTree()
      for (let i = 0; i < 300; i++) tree.set(i, i)
      for (const yields of ['keys', 'values', 'entries'] as const) {
        const it = tree[yields]()
        expect(it.next().done).to.equal(false)
        other.set(1, 1)
        other.set(2, 2)
        const seen = [...{ [Symbol.iterator]: () => it }].length
        expect(seen).to.equal(299)
      }
      const it = tree.values()
      for (let i = 0; i < 150; i++) it.next() // in the middle of a leaf or past one
      other.delete(1)
      expect(it.next().value).to.equal(150)
      tree.delete(299)
      expect(() => it.next()).to.throw(ConcurrentModificationError)
    })
  })

  describe('sets (OOTreeSet, IITreeSet, OOSet)', () => {
    it('add, has, delete, size, sorted iteration', () => {
      for (const s of [new OOTreeSet<number>(), new IITreeSet(), new OOSet<number>()]) {
        expect(s.add(3)).to.equal(true)
        expect(s.add(1)).to.equal(true)
        expect(s.add(3)).to.equal(false)
        expect(s.has(1)).to.equal(true)
        expect([...s]).to.deep.equal([1, 3])
        expect(s.delete(1)).to.equal(true)
        expect(s.delete(1)).to.equal(false)
        expect(s.size).to.equal(1)
      }
    })

    it('hold many keys through splits and deletions', () => {
      const s = new IITreeSet()
      const n = 5000
      s.update(shuffled(range(n), 11))
      expect(check(s)).to.equal(n)
      for (const i of range(n / 2)) s.delete(i * 2)
      expect(check(s)).to.equal(n / 2)
      expect([...s.keys(0, 9)]).to.deep.equal([1, 3, 5, 7, 9])
    })

    it('give the path to a key down to its set bucket (pathTo)', () => {
      const s = new OOTreeSet<number>()
      for (let i = 0; i < 100; i++) s.add(i)
      const path = pathTo(s, 5)
      expect(path[0]).to.equal(s)
      expect(path.length).to.equal(2)
      expect((path[1] as unknown as { _keys: number[] })._keys).to.include(5)
    })
  })

  describe('keys and values are checked', () => {
    it('rejects keys of the wrong kind, naming them', () => {
      expect(() => new IIBTree().set(1.5, 1)).to.throw(BTreeKeyError, /integer key expected/)
      expect(() => new LOBTree().set('x' as never, 1)).to.throw(BTreeKeyError)
      expect(() => new OOBTree().set({} as never, 1)).to.throw(BTreeKeyError, /cannot be a B-tree key/)
    })

    it('rejects keys of mixed kinds in one tree, in every node', () => {
      const t = new OOBTree()
      for (let i = 0; i < 100; i++) t.set(i, i)
      expect(() => t.set('a', 1)).to.throw(BTreeKeyError, /all keys of a tree must be of one kind/)
      const s = new OOTreeSet()
      s.add('x')
      expect(() => s.add(1)).to.throw(BTreeKeyError)
      expect(() => s.add(new Date())).to.throw(BTreeKeyError)
    })

    it('accepts array and Date keys and copies them', () => {
      const t = new OOBTree<readonly [number, string] | Date, number>()
      const k = [1, 'a'] as [number, string]
      t.set(k, 1)
      k[0] = 99
      expect(t.get([1, 'a'])).to.equal(1)
      expect([...t.keys()]).to.deep.equal([[1, 'a']])
    })

    it('rejects values of the wrong kind for numeric families', () => {
      expect(() => new IIBTree().set(1, 1.5)).to.throw(BTreeValueError, /integer value expected/)
      expect(() => new OOBTree().set(1, undefined)).to.throw(BTreeValueError, /undefined/)
      expect(new LLBTree().set(1n, 5 as unknown as bigint).get(1n)).to.equal(5n)
    })

    it('counts setting a 64-bit value to what it holds, given as a number, as no change (iterators go on)', () => {
      const t = new LLBTree([
        [1n, 5n],
        [2n, 6n],
      ])
      const values = t.values()
      expect(values.next().value).to.equal(5n)
      t.set(1n, 5 as unknown as bigint)
      expect(values.next().value).to.equal(6n)
    })
  })

  describe('Length tracking', () => {
    it('keeps size without walking the buckets', () => {
      const t = new IIBTree(undefined, { trackLength: true })
      for (let i = 0; i < 1000; i++) t.set(i, i)
      for (let i = 0; i < 1000; i++) t.set(i, -i) // replacing does not count
      for (let i = 0; i < 300; i++) t.delete(i)
      t.delete(-5)
      expect(t.size).to.equal(700)
      expect(check(t)).to.equal(700)
      t.clear()
      expect(t.size).to.equal(0)
    })
  })

  it('a constructor takes initial entries', () => {
    const t = new OOBTree<string, number>([['b', 2], ['a', 1]])
    expect([...t]).to.deep.equal([['a', 1], ['b', 2]])
    const s = new IITreeSet([3, 1, 2, 3])
    expect([...s]).to.deep.equal([1, 2, 3])
  })
})
