// SQLiteStorage writes big records one row per statement and small ones in batches: a commit
// mixing both must write every row, under the right oid and tid, and check every serial.
import { expect } from 'chai'
import { ConflictError, SQLiteStorage, type Tid } from '@wendelin/zodb'

import { record } from './storage-conformance.js'
import { commitRecords, freshSQLiteFile, removeSQLiteFiles, voteError } from './sqlite-helpers.js'

const MAX = 0xffffffffffffffffn
const freshFile = () => freshSQLiteFile('wendelin-sqlite-big-')
after(removeSQLiteFiles)

/** Sizes around the batching threshold (16 KiB) and far above it, small ones in between. */
function padFor(i: number): number {
  const sizes = [10, 16 * 1024 - 200, 16 * 1024 + 200, 20, 2 * 1024 * 1024, 30, 100 * 1024]
  return sizes[i % sizes.length]!
}

function bigRecord(i: number, v: number): Uint8Array {
  return record({ i, v, pad: String.fromCharCode(97 + (i % 26)).repeat(padFor(i)) })
}

const commit = commitRecords

describe('SQLiteStorage commits mixing big and small records', () => {
  it('writes every row under its oid and tid, and they survive reopening', () => {
    const file = freshFile()
    const s = new SQLiteStorage(file)
    const oids = Array.from({ length: 150 }, () => s.newOid())
    const t1 = commit(s, oids.map((oid, i) => [oid, 0n, bigRecord(i, 1)]))
    const t2 = commit(s, oids.filter((_, i) => i % 3 === 0).map((oid, i) => [oid, t1, bigRecord(i * 3, 2)]))
    s.close()
    const r = new SQLiteStorage(file)
    for (const [i, oid] of oids.entries()) {
      const loaded = r.loadBefore(oid, MAX)!
      expect(loaded.serial, `object ${i}`).to.equal(i % 3 === 0 ? t2 : t1)
      expect(loaded.data, `object ${i}`).to.deep.equal(bigRecord(i, i % 3 === 0 ? 2 : 1))
    }
    const txns = [...r.iterator()]
    expect(txns.map((t) => t.records.length)).to.deep.equal([150, 50])
    r.close()
  })

  it('finds a stale serial on a big record as on a small one, and an abort leaves nothing', () => {
    const s = new SQLiteStorage(freshFile())
    const oids = Array.from({ length: 80 }, () => s.newOid())
    const t1 = commit(s, oids.map((oid, i) => [oid, 0n, bigRecord(i, 1)]))
    const t2 = commit(s, oids.map((oid, i) => [oid, t1, bigRecord(i, 2)]))
    // 2 and 4 are big records (one row per statement), 70 a small one (in a batch).
    expect([padFor(2), padFor(4), padFor(70)]).to.deep.equal([16 * 1024 + 200, 2 * 1024 * 1024, 10])
    for (const bad of [2, 4, 70]) {
      const error = voteError(s, oids.map((oid, i): [bigint, Tid, Uint8Array] => [oid, i === bad ? t1 : t2, bigRecord(i, 3)]))
      expect(error, `object ${bad}`).to.be.instanceOf(ConflictError)
      expect((error as ConflictError).oid).to.equal(oids[bad])
    }
    for (const [i, oid] of oids.entries()) expect(s.loadBefore(oid, MAX)!.data).to.deep.equal(bigRecord(i, 2))
    expect(s.lastTransaction()).to.equal(t2)
    s.close()
  })
})
