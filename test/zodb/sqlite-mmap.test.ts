// SQLiteStorage reads the database file through a memory mapping (mmap_size) when asked to (mmapSize).
import { expect } from 'chai'
import { SQLiteStorage } from '@wendelin/zodb'

import { commitRecords, freshSQLiteFile, patternBytes, removeSQLiteFiles } from './sqlite-helpers.js'

after(removeSQLiteFiles)

const bytes = (n: number, seed: number): Uint8Array => patternBytes(n, seed, 7)

describe('SQLiteStorage memory-mapped reads', () => {
  it('maps the file only when asked (option or spec), and a spec carries the choice', () => {
    const file = freshSQLiteFile('wendelin-sqlite-mmap-')
    const off = new SQLiteStorage(file)
    const on = new SQLiteStorage(file, { mmapSize: 2 ** 40 })
    const fromSpec = SQLiteStorage.open(`sqlite:${file}?mmapSize=${1 << 30}`)
    try {
      expect(off.mmapSize).to.equal(0)
      expect(off.spec).to.not.include('mmapSize')
      expect(on.mmapSize).to.be.greaterThan(1 << 30) // SQLite's maximum, not what was asked
      expect(fromSpec.mmapSize).to.equal(1 << 30)
      const reopened = SQLiteStorage.open(on.spec)
      expect(reopened.mmapSize).to.equal(on.mmapSize)
      reopened.close()
      expect(() => new SQLiteStorage(file, { mmapSize: -1 })).to.throw(RangeError)
    } finally {
      off.close()
      on.close()
      fromSpec.close()
    }
  })

  it('a mapped reader sees records committed later by another instance, the file grown past its size at open', () => {
    const file = freshSQLiteFile('wendelin-sqlite-mmap-')
    const writer = new SQLiteStorage(file)
    const reader = new SQLiteStorage(file, { readOnly: true, mmapSize: 2 ** 40 })
    try {
      const small = writer.newOid()
      const t1 = commitRecords(writer, [[small, 0n, bytes(100, 1)]])
      expect([...reader.loadBefore(small, t1 + 1n)!.data]).to.deep.equal([...bytes(100, 1)])
      // Several MiB more: the file grows well beyond what the reader mapped when it first read.
      const big = Array.from({ length: 4 }, () => writer.newOid())
      const t2 = commitRecords(writer, big.map((oid, i) => [oid, 0n, bytes(3 << 20, 10 + i)] as [bigint, bigint, Uint8Array]))
      const t3 = commitRecords(writer, [[small, t1, bytes(5000, 2)]])
      for (const [i, oid] of big.entries()) {
        expect(Buffer.compare(reader.loadBefore(oid, t2 + 1n)!.data, bytes(3 << 20, 10 + i))).to.equal(0)
        const [range] = reader.loadBeforeRanges(oid, t3 + 1n, [[2_000_000, 16]])!
        expect([...range!]).to.deep.equal([...bytes(3 << 20, 10 + i).subarray(2_000_000, 2_000_016)])
      }
      // Both revisions of the small record, at their snapshots.
      expect([...reader.loadBefore(small, t2)!.data]).to.deep.equal([...bytes(100, 1)])
      expect([...reader.loadBefore(small, t3 + 1n)!.data]).to.deep.equal([...bytes(5000, 2)])
    } finally {
      reader.close()
      writer.close()
    }
  })
})
