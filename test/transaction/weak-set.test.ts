import { expect } from 'chai'
import { IterableWeakSet } from '@wendelin/transaction'

describe('IterableWeakSet', () => {
  it('adds once, iterates in insertion order, deletes and clears', () => {
    const set = new IterableWeakSet<object>()
    const a = {}
    const b = {}
    set.add(a).add(b).add(a)
    expect(set.size).to.equal(2)
    expect([...set]).to.deep.equal([a, b])
    expect(set.has(a)).to.equal(true)
    expect(set.delete(a)).to.equal(true)
    expect(set.delete(a)).to.equal(false)
    expect(set.has(a)).to.equal(false)
    expect([...set]).to.deep.equal([b])
    set.clear()
    expect(set.size).to.equal(0)
  })

  it('can be changed while it is iterated', () => {
    const set = new IterableWeakSet<object>()
    const items = [{}, {}, {}]
    for (const i of items) set.add(i)
    const seen: object[] = []
    for (const i of set) {
      seen.push(i)
      set.delete(i)
      set.add({})
    }
    expect(seen).to.deep.equal(items)
    expect(set.size).to.equal(3)
  })
})
