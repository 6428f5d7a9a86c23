// SQLiteStorage.loadBeforeRanges and loadBeforeInto: parts of a record as loadBefore would find
// it, at any snapshot — with the blob extension (incremental blob I/O) and without it.
import { createRequire } from 'node:module'

import Database from 'better-sqlite3'
import { expect } from 'chai'
import { type AutoVacuum, MAX_TID, POSKeyError, SQLiteStorage } from '@wendelin/zodb'

import { commitRecords, freshSQLiteFile, meta, patternBytes, removeSQLiteFiles } from './sqlite-helpers.js'

after(removeSQLiteFiles)

const bytes = (n: number, seed: number): Uint8Array => patternBytes(n, seed, 31)

/** A storage with a 3 MiB record then a 100-byte one for the same object. */
function twoRevisions(blobExtension: boolean, autoVacuum: AutoVacuum = 'none', file = freshSQLiteFile('wendelin-sqlite-ranges-')) {
  const s = new SQLiteStorage(file, { blobExtension, autoVacuum })
  const oid = s.newOid()
  const r1 = bytes(3 * 1024 * 1024, 1)
  const r2 = bytes(100, 2)
  const t1 = commitRecords(s, [[oid, 0n, r1]])
  const t2 = commitRecords(s, [[oid, t1, r2]])
  return { s, file, oid, r1, r2, t1, t2 }
}

for (const blobExtension of [true, false]) {
  describe(`SQLiteStorage parts of records (${blobExtension ? 'incremental blob I/O' : 'without the blob extension'})`, () => {
    it('tells whether it reads with the extension', () => {
      const s = new SQLiteStorage(freshSQLiteFile('wendelin-sqlite-ranges-'), { blobExtension })
      try {
        // The build ships the extension: a build without it must fail here, not run slowly.
        expect(s.blobExtension).to.equal(blobExtension)
      } finally {
        s.close()
      }
    })

    it('loadBeforeRanges gives the ranges of the revision current before a tid, clipped at the record\'s end', () => {
      const { s, oid, r1, r2, t1, t2 } = twoRevisions(blobExtension)
      try {
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

    it('loadBeforeInto copies the parts into the caller\'s arrays and leaves the rest of each as it was', () => {
      const { s, oid, r1, r2, t1, t2 } = twoRevisions(blobExtension)
      try {
        const head = new Uint8Array(8)
        const middle = new Uint8Array(1_000_000)
        const tail = new Uint8Array(10).fill(0xee)
        const rec = s.loadBeforeInto(oid, t2, [
          [0, head],
          [1_500_000, middle],
          [r1.length - 4, tail],
        ])
        expect(rec).to.deep.equal({ serial: t1, length: r1.length })
        expect([...head]).to.deep.equal([...r1.subarray(0, 8)])
        expect(Buffer.from(middle).equals(r1.subarray(1_500_000, 2_500_000))).to.equal(true)
        expect([...tail]).to.deep.equal([...r1.subarray(r1.length - 4), 0xee, 0xee, 0xee, 0xee, 0xee, 0xee])
        // the newest revision; a part past its end is untouched
        const past = new Uint8Array(4).fill(7)
        const all = new Uint8Array(200)
        expect(s.loadBeforeInto(oid, t2 + 1n, [[0, all], [100, past]])).to.deep.equal({ serial: t2, length: 100 })
        expect([...all.subarray(0, 100)]).to.deep.equal([...r2])
        expect([...past]).to.deep.equal([7, 7, 7, 7])
        // offsets and lengths past any record are simply past its end
        expect(s.loadBeforeRanges(oid, t2 + 1n, [[0, Number.MAX_SAFE_INTEGER], [2 ** 31, 4]])!.map((p) => p.length)).to.deep.equal([100, 0])
        expect(s.loadBeforeInto(oid, t2 + 1n, [[2 ** 31, past]])).to.deep.equal({ serial: t2, length: 100 })
        expect([...past]).to.deep.equal([7, 7, 7, 7])
        expect(s.loadBeforeInto(oid, t1, [[0, all]])).to.equal(null)
        expect(() => s.loadBeforeInto(oid + 1000n, t2, [[0, all]])).to.throw(POSKeyError)
        expect(() => s.loadBeforeInto(oid, t2, [])).to.throw(RangeError)
        expect(() => s.loadBeforeInto(oid, t2, [[-1, all]])).to.throw(RangeError)
      } finally {
        s.close()
      }
    })

    for (const autoVacuum of ['none', 'incremental'] as const)
    it(`reads pages in the WAL and pages copied back into the file alike, and a deletion as null (auto_vacuum ${autoVacuum})`, () => {
      const { s, file, oid, r1, t2 } = twoRevisions(blobExtension, autoVacuum)
      expect(s.autoVacuum).to.equal(autoVacuum)
      s.close() // the last close checkpoints: every page is in the file now
      const reopened = new SQLiteStorage(file, { blobExtension })
      try {
        expect(reopened.autoVacuum).to.equal(autoVacuum) // the file's, chosen at its creation
        const dest = new Uint8Array(r1.length)
        expect(reopened.loadBeforeInto(oid, t2, [[0, dest]])!.length).to.equal(r1.length)
        expect(Buffer.from(dest).equals(r1)).to.equal(true)
        expect([...reopened.loadBeforeRanges(oid, t2, [[3_000_000, 5]])![0]!]).to.deep.equal([...r1.subarray(3_000_000, 3_000_005)])
        // undoing an object's creation leaves a deletion record (no data) as its newest
        const other = reopened.newOid()
        const created = commitRecords(reopened, [[other, 0n, bytes(70_000, 3)]])
        const txn = meta()
        reopened.tpc_begin(txn)
        reopened.undo(created, txn)
        reopened.tpc_vote(txn)
        const t3 = reopened.tpc_finish(txn)
        expect(reopened.loadBefore(other, t3 + 1n)).to.equal(null)
        expect(reopened.loadBeforeRanges(other, t3 + 1n, [[0, 4]])).to.equal(null)
        expect(reopened.loadBeforeInto(other, t3 + 1n, [[0, dest]])).to.equal(null)
        expect(reopened.loadBeforeRanges(other, t3, [[69_998, 4]])!.map((p) => p.length)).to.deep.equal([2])
      } finally {
        reopened.close()
      }
    })
  })
}

describe('the blob extension on its own', () => {
  const addonPath = process.env.WENDELIN_SQLITE_BLOB_ADDON || new URL('../../../build/Release/sqlite_blob.node', import.meta.url).pathname
  const addon = createRequire(import.meta.url)(addonPath) as { setBuffers(b: Uint8Array[]): void; clearBuffers(): void }

  it('refuses to read into buffers that were not set, and bad arguments, with clear errors', () => {
    const { s, file } = twoRevisions(true)
    s.close()
    const db = new Database(file, { readonly: true })
    try {
      db.loadExtension(addonPath)
      const read = db.prepare("SELECT wendelin_blob_read('object_revisions', 'data', rowid, ?, ?) FROM object_revisions WHERE length(data) > 1000 LIMIT 1").pluck()
      expect(() => read.get(0, 0)).to.throw(/no such buffer/)
      const dest = new Uint8Array(16)
      addon.setBuffers([dest])
      try {
        expect(read.get(0, 0)).to.equal(16)
        expect(() => read.get(0, 1)).to.throw(/no such buffer/)
        expect(() => read.get(-1, 0)).to.throw(/offset must be an integer >= 0/)
      } finally {
        addon.clearBuffers()
      }
      expect(() => read.get(0, 0)).to.throw(/no such buffer/)
      expect(() => addon.setBuffers([new Uint16Array(2) as unknown as Uint8Array])).to.throw(TypeError, /Uint8Array/)
      expect(() => db.prepare("SELECT wendelin_blob_range('no_such_table', 'data', 1, 0, 4)").get()).to.throw(/no such table/)
    } finally {
      db.close()
    }
  })

  it('writes a buffer into a value at an offset, only where it fits, and not through a read-only connection', () => {
    const file = freshSQLiteFile('wendelin-sqlite-blob-write-')
    const db = new Database(file)
    try {
      db.loadExtension(addonPath)
      db.exec('CREATE TABLE t (data BLOB)')
      const rowid = db.prepare('INSERT INTO t (data) VALUES (zeroblob(100000))').run().lastInsertRowid
      const write = db.prepare("SELECT wendelin_blob_write('t', 'data', ?, ?, 0)").pluck()
      expect(() => write.get(rowid, 0)).to.throw(/no such buffer/)
      const src = new Uint8Array(70_000).map((_, i) => i % 251)
      addon.setBuffers([src])
      try {
        expect(write.get(rowid, 30_000)).to.equal(70_000)
        expect(() => write.get(rowid, 30_001)).to.throw(/does not fit/)
        expect(() => write.get(rowid, -1)).to.throw(/offset must be an integer >= 0/)
      } finally {
        addon.clearBuffers()
      }
      const data = db.prepare('SELECT data FROM t WHERE rowid = ?').pluck().get(rowid) as Buffer
      expect(data.subarray(0, 30_000).every((b) => b === 0)).to.equal(true)
      expect(Buffer.compare(data.subarray(30_000), src)).to.equal(0)
    } finally {
      db.close()
    }
    const readOnly = new Database(file, { readonly: true })
    try {
      readOnly.loadExtension(addonPath)
      addon.setBuffers([new Uint8Array(4)])
      try {
        expect(() => readOnly.prepare("SELECT wendelin_blob_write('t', 'data', 1, 0, 0)").get()).to.throw(/readonly|read-only/i)
      } finally {
        addon.clearBuffers()
      }
    } finally {
      readOnly.close()
    }
  })
})

describe('SQLiteStorage big records written with the blob extension', () => {
  it('stores records over 16 KiB byte for byte as a bound blob would; an abort after the vote leaves none of them', () => {
    const records = [20_000, 2 * 1024 * 1024 + 77, 16 * 1024 + 1].map((n, k) => new Uint8Array(n).map((_, i) => (i * 7 + k) % 256))
    const files: string[] = []
    for (const blobExtension of [true, false]) {
      const file = freshSQLiteFile('wendelin-sqlite-big-')
      files.push(file)
      const s = new SQLiteStorage(file, { blobExtension })
      try {
        expect(s.blobExtension).to.equal(blobExtension) // (a missing extension would test the fallback twice)
        const oids = records.map(() => s.newOid())
        const tid = commitRecords(s, oids.map((oid, i) => [oid, 0n, records[i]!]))
        for (const [i, oid] of oids.entries()) expect(Buffer.compare(s.loadBefore(oid, tid + 1n)!.data, records[i]!)).to.equal(0)
        // a transaction aborted after its vote wrote its big rows leaves none of them behind
        const txn = meta()
        const fresh = s.newOid()
        s.tpc_begin(txn)
        s.store(fresh, 0n, records[1]!, txn)
        s.store(oids[0]!, tid, records[1]!, txn)
        s.tpc_vote(txn)
        s.tpc_abort(txn)
        expect(() => s.loadBefore(fresh, MAX_TID)).to.throw(POSKeyError)
        expect(s.history(oids[0]!, 10)).to.have.length(1)
        expect(Buffer.compare(s.loadBefore(oids[0]!, MAX_TID)!.data, records[0]!)).to.equal(0)
      } finally {
        s.close()
      }
    }
    const [a, b] = files.map((f) => new Database(f, { readonly: true }))
    try {
      const rows = (db: Database.Database) => db.prepare('SELECT oid, data FROM object_revisions ORDER BY oid').raw().all()
      expect(rows(a!)).to.deep.equal(rows(b!))
    } finally {
      a!.close()
      b!.close()
    }
  })
})

describe('SQLiteStorage page cache and big records', () => {
  it('holds a record too big for its cache twice over while the commit writes it, and goes back to its size after', () => {
    const s = new SQLiteStorage(freshSQLiteFile('wendelin-sqlite-cache-'))
    try {
      const atOpen = s.pageCacheKiB
      expect(atOpen).to.be.greaterThan(0)
      const big = new Uint8Array(Math.ceil((atOpen * 1024) / 2) + 100_000).map((_, i) => (i * 13) % 256)
      const oid = s.newOid()
      const txn = meta()
      s.tpc_begin(txn)
      s.store(oid, 0n, big, txn)
      s.tpc_vote(txn)
      const raisedFor = (record: Uint8Array) => Math.ceil((2 * record.length) / 1024) + 1024 // twice the record, and 1 MiB
      expect(s.pageCacheKiB).to.equal(raisedFor(big)) // raised for the write
      const tid = s.tpc_finish(txn)
      expect(s.pageCacheKiB).to.equal(atOpen)
      expect(Buffer.compare(s.loadBefore(oid, tid + 1n)!.data, big)).to.equal(0)
      // an abort after the vote puts it back too; a smaller big record after a bigger one in
      // the same commit does not lower it meanwhile; one the cache holds twice leaves it alone
      const again = meta()
      const other = s.newOid()
      s.tpc_begin(again)
      s.store(oid, tid, big, again)
      s.store(other, 0n, big.subarray(0, Math.ceil((atOpen * 1024) / 2) + 10_000), again)
      s.tpc_vote(again)
      expect(s.pageCacheKiB).to.equal(raisedFor(big))
      s.tpc_abort(again)
      expect(s.pageCacheKiB).to.equal(atOpen)
      commitRecords(s, [[oid, tid, new Uint8Array(100_000)]])
      expect(s.pageCacheKiB).to.equal(atOpen)
    } finally {
      s.close()
    }
  })
})

describe('SQLiteStorage parts of records, whatever the query planner knows', () => {
  it('copies from the newest revision before the tid only, after ANALYZE too (an old snapshot of an object with many revisions)', () => {
    const file = freshSQLiteFile('wendelin-sqlite-ranges-')
    const s = new SQLiteStorage(file)
    try {
      const oid = s.newOid()
      const t1 = commitRecords(s, [[oid, 0n, new Uint8Array([0x41, 0x41, 0x41, 0x41])]])
      const t2 = commitRecords(s, [[oid, t1, new Uint8Array([0x42])]])
      // many later revisions of the object: by the statistics, the tid index looks better
      for (let i = 0, last = t2; i < 300; i++) last = commitRecords(s, [[oid, last, new Uint8Array(20)]])
      const raw = new Database(file)
      raw.exec('ANALYZE')
      raw.close()
      const reopened = new SQLiteStorage(file)
      try {
        const dest = new Uint8Array(4).fill(0xee)
        expect(reopened.loadBeforeInto(oid, t2 + 1n, [[0, dest]])).to.deep.equal({ serial: t2, length: 1 })
        expect([...dest]).to.deep.equal([0x42, 0xee, 0xee, 0xee]) // nothing of the older, longer revision
        expect([...reopened.loadBeforeRanges(oid, t2, [[0, 8]])![0]!]).to.deep.equal([0x41, 0x41, 0x41, 0x41])
      } finally {
        reopened.close()
      }
    } finally {
      s.close()
    }
  })

  it('a spec carries blobExtension=0, so another thread\'s instance reads the same way', () => {
    const s = new SQLiteStorage(freshSQLiteFile('wendelin-sqlite-ranges-'), { blobExtension: false })
    try {
      expect(s.spec).to.match(/[?&]blobExtension=0/)
      const again = SQLiteStorage.open(s.spec)
      expect(again.blobExtension).to.equal(false)
      again.close()
    } finally {
      s.close()
    }
  })
})
