// Set operations on collections of a family (BTrees' set operation suites).
import { expect } from 'chai'
import { II, IIBTree, IISet, IITreeSet, IO, IOBTree, LL, LLBTree, OO, OOBTree, OOSet, OOTreeSet, SetBucket, Bucket } from '@wendelin/btrees'

const keysOf = (x: unknown) => [...(x as Iterable<unknown>)].map((e) => (Array.isArray(e) ? e[0] : e))

describe('family set operations', () => {
  const a = new IITreeSet([1, 3, 5, 7, 9])
  const b = new IITreeSet([3, 4, 5, 6])

  it('union and intersection give a Set of the family', () => {
    const u = II.union(a, b)
    expect(u).to.be.instanceOf(II.Set)
    expect(u).to.be.instanceOf(SetBucket)
    expect(keysOf(u)).to.deep.equal([1, 3, 4, 5, 6, 7, 9])
    expect(keysOf(II.intersection(a, b))).to.deep.equal([3, 5])
  })

  it('treat null as BTrees treats None', () => {
    expect(II.union(null, b)).to.equal(b)
    expect(II.union(a, null)).to.equal(a)
    expect(II.intersection(null, b)).to.equal(b)
    expect(II.difference(null, b)).to.equal(null)
    expect(II.difference(a, null)).to.equal(a)
    expect(II.weightedUnion(null, null)).to.deep.equal([0, null])
    expect(II.weightedUnion(null, b, 1, 7)).to.deep.equal([7, b])
  })

  it('difference keeps values when the first operand is a mapping', () => {
    const m = new IOBTree<string>([[1, 'a'], [2, 'b'], [3, 'c']])
    const d = IO.difference(m, new IITreeSet([2]))
    expect(d).to.be.instanceOf(IO.Bucket)
    expect([...(d as Bucket<number, string>).entries()]).to.deep.equal([[1, 'a'], [3, 'c']])
    expect(keysOf(II.difference(a, b))).to.deep.equal([1, 7, 9])
  })

  it('accepts plain iterables, sorting and validating them', () => {
    expect(keysOf(II.union(a, [100, 2, 2]))).to.deep.equal([1, 2, 3, 5, 7, 9, 100])
    expect(() => II.union(a, [1.5])).to.throw(/integer key expected/)
  })

  it('refuses to mix families with different key kinds', () => {
    expect(() => II.union(a, new OOTreeSet(['x']) as never)).to.throw(TypeError, /cannot combine/)
  })

  it('weightedUnion: mapping values are scaled and added; set members count as 1', () => {
    const m1 = new IIBTree([[1, 10], [2, 20]])
    const m2 = new IIBTree([[2, 1], [3, 2]])
    const [w, r] = II.weightedUnion(m1, m2, 2, 3)
    expect(w).to.equal(1)
    expect([...(r as Bucket<number, number>).entries()]).to.deep.equal([[1, 20], [2, 43], [3, 6]])
    const [w2, r2] = II.weightedUnion(new IISet(), new IITreeSet([1]), 1, 1)
    expect(w2).to.equal(1)
    expect(r2).to.be.instanceOf(II.Set)
  })

  it('weightedIntersection: two sets weigh w1 + w2', () => {
    const [w, r] = II.weightedIntersection(a, b, 2, 5)
    expect(w).to.equal(7)
    expect(keysOf(r)).to.deep.equal([3, 5])
    const [w2, r2] = II.weightedIntersection(new IIBTree([[3, 1], [4, 1]]), b, 2, 5)
    expect(w2).to.equal(1)
    expect([...(r2 as Bucket<number, number>).entries()]).to.deep.equal([[3, 7], [4, 7]])
  })

  it('multiunion merges integers and integer collections (integer-key families only)', () => {
    expect(keysOf(II.multiunion([a, b, 42, [0, 1]]))).to.deep.equal([0, 1, 3, 4, 5, 6, 7, 9, 42])
    expect(keysOf(LL.multiunion([3n, [1n, 2n]]))).to.deep.equal([1n, 2n, 3n])
    expect((OO as { multiunion?: unknown }).multiunion).to.equal(undefined)
    expect((OO as { weightedUnion?: unknown }).weightedUnion).to.equal(undefined)
  })

  it('works on object keys', () => {
    const x = new OOTreeSet(['b', 'a'])
    const y = new OOSet<string>()
    y.add('c')
    y.add('a')
    expect(keysOf(OO.union(x, y))).to.deep.equal(['a', 'b', 'c'])
    expect(keysOf(OO.difference(new OOBTree<string, number>([['a', 1], ['z', 2]]), y))).to.deep.equal(['z'])
  })

  it('takes weights as values of the family: numbers converted for L families, floats refused for I', () => {
    const a = new LLBTree([[1n, 2n]])
    const b = new LLBTree([
      [1n, 3n],
      [2n, 1n],
    ])
    const [w, r] = LL.weightedUnion(a, b, 2 as unknown as bigint, 3 as unknown as bigint)
    expect(w).to.equal(1n)
    expect([...(r as LLBTree).entries()]).to.deep.equal([
      [1n, 13n],
      [2n, 3n],
    ])
    const [, ri] = LL.weightedIntersection(a, b, 2 as unknown as bigint, 1 as unknown as bigint)
    expect([...(ri as LLBTree).entries()]).to.deep.equal([[1n, 7n]])
    expect(() => II.weightedUnion(new IIBTree([[1, 3]]), new IIBTree([[2, 4]]), 1.5, 1)).to.throw(TypeError)
  })
})
