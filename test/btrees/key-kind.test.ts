import { expect } from 'chai'
import { BTreeKeyError, compareObjectKeys, intKeys, longKeys, objectKeys, type ObjectKey } from '@wendelin/btrees'

describe('B-tree key kinds', () => {
  describe('int keys', () => {
    it('accept safe integers and normalize -0', () => {
      expect(intKeys.check(42)).to.equal(42)
      expect(Object.is(intKeys.check(-0), 0)).to.equal(true)
      expect(intKeys.check(Number.MAX_SAFE_INTEGER)).to.equal(Number.MAX_SAFE_INTEGER)
    })
    it('reject everything else with a message naming the value', () => {
      for (const bad of [1.5, NaN, Infinity, 2 ** 53, '1', 1n, null, undefined, {}]) {
        expect(() => intKeys.check(bad), String(bad)).to.throw(BTreeKeyError, /integer key expected/)
      }
      expect(() => intKeys.check('7')).to.throw(/got "7"/)
    })
  })

  describe('long keys', () => {
    it('accept bigints in the signed 64-bit range and safe-integer numbers (as bigint)', () => {
      expect(longKeys.check(5n)).to.equal(5n)
      expect(longKeys.check(5)).to.equal(5n)
      expect(longKeys.check(2n ** 63n - 1n)).to.equal(2n ** 63n - 1n)
      expect(longKeys.check(-(2n ** 63n))).to.equal(-(2n ** 63n))
    })
    it('reject values out of range or of another type', () => {
      expect(() => longKeys.check(2n ** 63n)).to.throw(BTreeKeyError, /out of the signed 64-bit range/)
      expect(() => longKeys.check(1.5)).to.throw(BTreeKeyError, /64-bit integer key expected/)
      expect(() => longKeys.check('1')).to.throw(BTreeKeyError)
    })
    it('compare by value', () => {
      expect(longKeys.compare(-(2n ** 63n), 2n ** 63n - 1n)).to.be.lessThan(0)
      expect(longKeys.compare(3n, 3n)).to.equal(0)
    })
  })

  describe('object keys', () => {
    const sorted: ObjectKey[] = [
      -Infinity, -5n, -1.5, 0, 1, 2n, 2.5, 3n, Infinity,
      '', 'A', 'B', 'a', 'ab', 'b',
      new Date(0), new Date(1000),
      [], [0], [0, 'a'], [1], ['a'], [[0]],
    ]
    it('follow one total order: numeric < string < Date < array', () => {
      for (let i = 0; i < sorted.length; i++) {
        for (let j = 0; j < sorted.length; j++) {
          const c = Math.sign(compareObjectKeys(sorted[i]!, sorted[j]!))
          expect(c, `${String(sorted[i])} vs ${String(sorted[j])}`).to.equal(Math.sign(i - j))
        }
      }
    })
    it('compare numbers and bigints by value', () => {
      expect(compareObjectKeys(2, 2n)).to.equal(0)
      expect(compareObjectKeys(2 ** 60, 2n ** 60n + 1n)).to.be.lessThan(0)
      expect(compareObjectKeys(2n ** 60n + 1n, 2 ** 60)).to.be.greaterThan(0)
    })
    it('copy arrays (frozen) and dates, so callers cannot change a key inside a tree', () => {
      const arr = [1, ['x']]
      const key = objectKeys.check(arr) as readonly ObjectKey[]
      expect(key).to.deep.equal([1, ['x']])
      expect(key).to.not.equal(arr)
      expect(Object.isFrozen(key)).to.equal(true)
      expect(Object.isFrozen(key[1])).to.equal(true)
      const d = new Date(5)
      const dk = objectKeys.check(d)
      d.setTime(10)
      expect((dk as Date).getTime()).to.equal(5)
    })
    it('refuse an array key with a hole as one holding undefined (a hole passed, then broke comparisons)', () => {
      // eslint-disable-next-line no-sparse-arrays
      const holey = [1, , 3]
      expect(() => objectKeys.check(holey)).to.throw(BTreeKeyError, /key\[1\]/)
    })
    it('reject values that cannot be ordered or may change, naming where', () => {
      expect(() => objectKeys.check(NaN)).to.throw(BTreeKeyError, /key is NaN/)
      expect(() => objectKeys.check(new Date(NaN))).to.throw(BTreeKeyError, /invalid Date/)
      expect(() => objectKeys.check({ a: 1 })).to.throw(BTreeKeyError, /key cannot be a B-tree key: Object/)
      expect(() => objectKeys.check([1, [2, null]])).to.throw(BTreeKeyError, /key\[1\]\[1\] cannot be a B-tree key: null/)
      for (const bad of [undefined, null, true, Symbol('s'), () => 1, new Map(), new Uint8Array(2)]) {
        expect(() => objectKeys.check(bad)).to.throw(BTreeKeyError)
      }
    })
    it('tell whether two keys may share a tree (same class)', () => {
      expect(objectKeys.sameClass(1, 2n)).to.equal(true)
      expect(objectKeys.sameClass('a', 'b')).to.equal(true)
      expect(objectKeys.sameClass(1, 'a')).to.equal(false)
      expect(objectKeys.sameClass([1], ['a'])).to.equal(true)
      expect(objectKeys.sameClass(new Date(), 1)).to.equal(false)
    })
  })
})
