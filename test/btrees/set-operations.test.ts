import { expect } from 'chai'
import { setOperations as ops } from '@wendelin/btrees'

const cmp = (a: number, b: number) => a - b
const numbers: ops.WeightArithmetic<number> = { one: 1, zero: 0, add: (a, b) => a + b, scale: (v, w) => v * w }

describe('set operations (sorted merges)', () => {
  it('difference keeps the keys (and values) of the first input missing from the second', () => {
    expect(ops.difference({ keys: [1, 2, 3, 5] }, [2, 4, 5], cmp)).to.deep.equal({ keys: [1, 3], values: undefined })
    expect(ops.difference({ entries: [[1, 'a'], [2, 'b'], [3, 'c']] as Array<[number, string]> }, [0, 2], cmp)).to.deep.equal({
      keys: [1, 3],
      values: ['a', 'c'],
    })
    expect(ops.difference({ keys: [1, 2] }, [], cmp).keys).to.deep.equal([1, 2])
  })

  it('union and intersection of sorted keys', () => {
    expect(ops.union([1, 3, 5], [2, 3, 4, 9], cmp)).to.deep.equal([1, 2, 3, 4, 5, 9])
    expect(ops.union([], [1], cmp)).to.deep.equal([1])
    expect(ops.intersection([1, 3, 5, 7], [0, 3, 4, 7, 8], cmp)).to.deep.equal([3, 7])
    expect(ops.intersection([1], [], cmp)).to.deep.equal([])
  })

  it('weightedUnion adds weighted values; set members count as 1', () => {
    const a = { entries: [[1, 10], [2, 20]] as Array<[number, number]> }
    const b = { entries: [[2, 1], [3, 2]] as Array<[number, number]> }
    expect(ops.weightedUnion(a, b, 2, 3, cmp, numbers)).to.deep.equal({ weight: 1, keys: [1, 2, 3], values: [20, 43, 6] })
    expect(ops.weightedUnion(a, { keys: [2, 4] }, 1, 5, cmp, numbers)).to.deep.equal({ weight: 1, keys: [1, 2, 4], values: [10, 25, 5] })
    expect(ops.weightedUnion({ keys: [1, 2] }, { keys: [2, 3] }, 2, 3, cmp, numbers)).to.deep.equal({ weight: 1, keys: [1, 2, 3], values: undefined })
  })

  it('weightedIntersection: mappings give weighted sums with weight 1, two sets give a set weighing w1+w2', () => {
    const a = { entries: [[1, 10], [2, 20], [4, 40]] as Array<[number, number]> }
    const b = { entries: [[2, 1], [4, 2], [5, 5]] as Array<[number, number]> }
    expect(ops.weightedIntersection(a, b, 1, 10, cmp, numbers)).to.deep.equal({ weight: 1, keys: [2, 4], values: [30, 60] })
    expect(ops.weightedIntersection(a, { keys: [4] }, 2, 3, cmp, numbers)).to.deep.equal({ weight: 1, keys: [4], values: [83] })
    expect(ops.weightedIntersection({ keys: [1, 2] }, { keys: [2, 3] }, 2, 3, cmp, numbers)).to.deep.equal({ weight: 5, keys: [2], values: undefined })
  })

  it('multiunion merges integers and iterables of integers, sorted and without duplicates', () => {
    expect(ops.multiunion<number>([[5, 1, 3], 2, [3, 4], [], 1], cmp)).to.deep.equal([1, 2, 3, 4, 5])
    expect(ops.multiunion<bigint>([[5n, 1n], 3n], (a, b) => (a < b ? -1 : a > b ? 1 : 0))).to.deep.equal([1n, 3n, 5n])
  })
})
