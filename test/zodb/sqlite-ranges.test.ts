// SQLiteStorage.loadBeforeRanges: parts of a record as loadBefore would find it, at any snapshot.
import { expect } from 'chai'
import { POSKeyError, SQLiteStorage } from '@wendelin/zodb'

import { commitRecords, freshSQLiteFile, patternBytes, removeSQLiteFiles } from './sqlite-helpers.js'

after(removeSQLiteFiles)

const bytes = (n: number, seed: number): Uint8Array => patternBytes(n, seed, 31)

describe('SQLiteStorage.loadBeforeRanges', () => {
  it('gives the ranges of the revision current before a tid, clipped at the record\'s end', () => {
    const s = new SQLiteStorage(freshSQLiteFile('wendelin-sqlite-ranges-'))
    try {
      const oid = s.newOid()
      const r1 = bytes(3 * 1024 * 1024, 1)
      const r2 = bytes(100, 2)
      const t1 = commitRecords(s, [[oid, 0n, r1]])
      const t2 = commitRecords(s, [[oid, t1, r2]])
      const at = (tid: bigint, ranges: Array<[number, number]>) => s.loadBeforeRanges(oid, tid, ranges)!.map((p) => [...p])
      // before t2: the big record, a range far into it and one across its end
      expect(at(t2, [[0, 4], [2_000_000, 3], [r1.length - 2, 10]])).to.deep.equal([[...r1.subarray(0, 4)], [...r1.subarray(2_000_000, 2_000_003)], [...r1.subarray(r1.length - 2)]])
      // the newest: the small one; a range past its end is empty
      expect(at(t2 + 1n, [[98, 5], [500, 8]])).to.deep.equal([[...r2.subarray(98)], []])
      // nothing before the first revision: null, as loadBefore
      expect(s.loadBefore(oid, t1)).to.equal(null)
      expect(s.loadBeforeRanges(oid, t1, [[0, 1]])).to.equal(null)
      expect(() => s.loadBeforeRanges(oid + 1000n, t2, [[0, 1]])).to.throw(POSKeyError)
      expect(() => s.loadBeforeRanges(oid, t2, [])).to.throw(RangeError)
      expect(() => s.loadBeforeRanges(oid, t2, [[-1, 1]])).to.throw(RangeError)
    } finally {
      s.close()
    }
  })
})
