// Copying a storage into another (ZODB's copyTransactionsFrom): every transaction as it was
// committed — tids, metadata, records, deletions, pack status — between MemoryStorage and
// SQLiteStorage both ways; an incremental copy into an earlier copy; refusals that write nothing;
// and `restore`, the storage method the copy goes through.
import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import {
  DB,
  MemoryStorage,
  POSError,
  POSKeyError,
  ReadOnlyError,
  SQLiteStorage,
  StorageTransactionError,
  UndoError,
  copyTransactions,
  type CopyProgress,
  type Oid,
  type Storage,
  type Tid,
  type TransactionRecord,
} from '@wendelin/zodb'

import { Item } from './helpers.js'
import { commitRecords, meta, record, stateOf } from './storage-conformance.js'
import { freshSQLiteFile, removeSQLiteFiles } from './sqlite-helpers.js'

const kinds: Record<string, () => Storage> = {
  memory: () => new MemoryStorage(),
  sqlite: () => SQLiteStorage.open(freshSQLiteFile('wendelin-copy-')),
}

/** Everything a storage tells of its history, to compare two of them. */
function historyOf(s: Storage): unknown[] {
  return [...s.iterator()].map((t) => [t.tid, t.status, t.user, t.description, t.extension, t.records.map((r) => [r.oid, r.tid, r.data === null ? null : Buffer.from(r.data).toString('hex')]).sort()])
}

/** Every object's revision before each tid, as loadBefore gives it. */
function snapshotsOf(s: Storage, oids: Oid[], tids: Tid[]): unknown[] {
  return tids.map((tid) =>
    oids.map((oid) => {
      try {
        const r = s.loadBefore(oid, tid + 1n)
        return r === null ? null : [Buffer.from(r.data).toString('hex'), r.serial, r.nextSerial]
      } catch (error) {
        if (error instanceof POSKeyError) return 'no such object'
        throw error
      }
    }),
  )
}

/** A history with creations, changes, metadata, an undo that deletes an object, and a pack. */
function makeHistory(s: Storage): { oids: Oid[]; tids: Tid[] } {
  const [a, b, c] = [s.newOid(), s.newOid(), s.newOid()]
  const tids: Tid[] = []
  tids.push(commitRecords(s, [[a, 0n, record({ value: 1 })]], meta('first', '/ alice', { request: '/one', n: 1 })))
  tids.push(commitRecords(s, [[a, tids[0]!, record({ value: 2 })], [b, 0n, record({ value: 10 })]], meta('second')))
  tids.push(commitRecords(s, [[c, 0n, new Uint8Array(300_000).fill(7)]], meta('a big record')))
  const undo = meta('undo the second')
  s.tpc_begin(undo)
  s.undo!(tids[1]!, undo)
  s.tpc_vote(undo)
  tids.push(s.tpc_finish(undo))
  tids.push(commitRecords(s, [[a, tids[3]!, record({ value: 3 })]], meta('after the undo', 'bob')))
  return { oids: [a, b, c], tids }
}

/** Undo `tid` in `s`: the objects it changes, or the UndoError. */
function tryUndo(s: Storage, tid: Tid): unknown {
  const txn = meta('undo')
  s.tpc_begin(txn)
  try {
    const oids = s.undo!(tid, txn)
    s.tpc_vote(txn)
    s.tpc_finish(txn)
    return oids
  } catch (error) {
    s.tpc_abort(txn)
    if (error instanceof UndoError) return 'UndoError'
    throw error
  }
}

describe('copyTransactions', function () {
  after(removeSQLiteFiles)

  for (const [from, makeSource] of Object.entries(kinds)) {
    for (const [to, makeDestination] of Object.entries(kinds)) {
      it(`copies ${from} into ${to}: the same transactions, revisions and tids, deletions included`, () => {
        using source = makeSource()
        using destination = makeDestination()
        const { oids, tids } = makeHistory(source)
        const seen: CopyProgress[] = []
        const copied = copyTransactions(source, destination, { onProgress: (p) => void seen.push({ ...p }) })
        expect(copied).to.deep.include({ transactions: 5, records: 7, tid: tids[4] })
        expect(copied.bytes).to.be.above(300_000)
        expect(seen.map((p) => p.tid)).to.deep.equal(tids)
        expect(historyOf(destination)).to.deep.equal(historyOf(source))
        expect(snapshotsOf(destination, oids, tids)).to.deep.equal(snapshotsOf(source, oids, tids))
        expect(destination.lastTransaction()).to.equal(source.lastTransaction())
        expect(destination.len()).to.equal(source.len())
        expect(destination.history(oids[0]!, 10).map((h) => [h.tid, h.user, h.description])).to.deep.equal(
          source.history(oids[0]!, 10).map((h) => [h.tid, h.user, h.description]),
        )
        // The copy goes on as a database of its own: new oids and tids come after the copied ones.
        const oid = destination.newOid()
        expect(oid > oids[2]!).to.equal(true)
        const tid = commitRecords(destination, [[oid, 0n, record({ value: 4 })], [oids[0]!, tids[4]!, record({ value: 5 })]])
        expect(tid > tids[4]!).to.equal(true)
        expect(stateOf(destination.loadBefore(oids[0]!, tid + 1n)!.data)).to.deep.equal({ value: 5 })
      })
    }
  }

  it('keeps the pack status of a packed source', () => {
    using source = kinds.sqlite!()
    using destination = kinds.memory!()
    const { tids } = makeHistory(source)
    source.pack(tids[2]!, false)
    copyTransactions(source, destination)
    expect([...destination.iterator()].map((t) => t.status)).to.deep.equal([...source.iterator()].map((t) => t.status))
    expect([...destination.iterator()].some((t) => t.status === 'p')).to.equal(true)
  })

  it('into an earlier copy copies only what came after it (an incremental backup), and into a file that outlives its process', () => {
    using source = kinds.memory!()
    const file = freshSQLiteFile('wendelin-copy-')
    const { oids, tids } = makeHistory(source)
    {
      using destination = SQLiteStorage.open(file)
      copyTransactions(source, destination)
    }
    const later = commitRecords(source, [[oids[1]!, 0n, record({ value: 11 })]], meta('later'))
    using destination = SQLiteStorage.open(file)
    expect(copyTransactions(source, destination)).to.deep.include({ transactions: 1, records: 1, tid: later })
    expect(copyTransactions(source, destination).transactions).to.equal(0)
    expect(historyOf(destination)).to.deep.equal(historyOf(source))
    expect(snapshotsOf(destination, oids, [...tids, later])).to.deep.equal(snapshotsOf(source, oids, [...tids, later]))
  })

  it('refuses a destination that is not empty and not an earlier copy, before writing anything', () => {
    using source = kinds.memory!()
    using destination = kinds.sqlite!()
    makeHistory(source)
    const own = commitRecords(destination, [[destination.newOid(), 0n, record({ value: 1 })]])
    expect(() => copyTransactions(source, destination)).to.throw(POSError, /not an earlier copy/)
    expect([...destination.iterator()].map((t) => t.tid)).to.deep.equal([own])
    // And a storage without restore (a read-only one refuses to be written).
    const plain = { getName: () => 'plain', restore: undefined } as unknown as Storage
    expect(() => copyTransactions(source, plain)).to.throw(TypeError, /cannot be copied into/)
  })

  it('a DB open on the destination sees the transactions restored into it at its next transaction', () => {
    using source = kinds.memory!()
    using destination = kinds.sqlite!()
    const w = new DB(source) // (makes the root)
    copyTransactions(source, destination)
    const db = new DB(destination)
    const tm2 = new TransactionManager({ explicit: true })
    const reader = db.open({ transactionManager: tm2 })
    tm2.begin()
    expect((reader.root as Record<string, unknown>).item).to.equal(undefined)
    const tm = new TransactionManager({ explicit: true })
    const conn = w.open({ transactionManager: tm })
    tm.begin()
    ;(conn.root as Record<string, unknown>).item = new Item('one')
    tm.commit()
    copyTransactions(source, destination)
    expect((reader.root as Record<string, unknown>).item).to.equal(undefined) // its snapshot
    tm2.abort()
    tm2.begin()
    expect(((reader.root as Record<string, unknown>).item as Item).name).to.equal('one')
    tm2.abort()
    db.close()
    w.close()
  })

  for (const [kind, make] of Object.entries(kinds)) {
    it(`${kind}: restore refuses what it cannot write, and writes nothing then`, () => {
      using s = make()
      const t = (tid: Tid, records: TransactionRecord['records'], status: ' ' | 'p' = ' '): TransactionRecord => ({ tid, status, user: 'u', description: 'd', extension: {}, records })
      const data = record({ value: 1 })
      s.restore!(t(100n, [{ oid: 5n, tid: 100n, data }]))
      expect(() => s.restore!(t(100n, []))).to.throw(StorageTransactionError, /not after the last one/)
      expect(() => s.restore!(t(50n, []))).to.throw(StorageTransactionError, /not after the last one/)
      expect(() => s.restore!(t(0n, []))).to.throw(StorageTransactionError, /tid 0/)
      expect(() => s.restore!(t(200n, [{ oid: 6n, tid: 200n, data }, { oid: 6n, tid: 200n, data }]))).to.throw(StorageTransactionError, /two records/)
      expect(() => s.restore!(t(200n, [{ oid: 6n, tid: 200n, data: 'x' as unknown as Uint8Array }]))).to.throw(TypeError, /Uint8Array or null/)
      expect(() => s.restore!(t(200n, [{ oid: -1n, tid: 200n, data }]))).to.throw(TypeError, /oid/)
      expect(() => s.restore!({ ...t(200n, []), user: 3 as unknown as string })).to.throw(TypeError, /metadata/)
      const txn = meta()
      s.tpc_begin(txn)
      expect(() => s.restore!(t(200n, []))).to.throw(StorageTransactionError, /committing/)
      s.tpc_abort(txn)
      expect([...s.iterator()].map((x) => x.tid)).to.deep.equal([100n])
      expect(s.newOid() > 5n).to.equal(true)
    })
  }

  it('a read-only storage refuses restore', () => {
    const file = freshSQLiteFile('wendelin-copy-')
    SQLiteStorage.open(file).close()
    using s = SQLiteStorage.open(file, { readOnly: true })
    expect(() => s.restore!({ tid: 1n, status: ' ', user: '', description: '', extension: {}, records: [] })).to.throw(ReadOnlyError)
    using m = new MemoryStorage({ readOnly: true })
    expect(() => m.restore!({ tid: 1n, status: ' ', user: '', description: '', extension: {}, records: [] })).to.throw(ReadOnlyError)
  })

  for (const [from, makeSource] of Object.entries(kinds)) {
    for (const [to, makeDestination] of Object.entries(kinds)) {
      it(`${from} into ${to}: a transaction at or before a pack of the source cannot be undone in the copy either`, () => {
        using source = makeSource()
        using destination = makeDestination()
        const x = source.newOid()
        const y = source.newOid()
        const t0 = commitRecords(source, [[x, 0n, record({ value: 1 })]])
        const t1 = commitRecords(source, [[x, t0, record({ value: 2 })]])
        commitRecords(source, [[y, 0n, record({ value: 3 })]])
        // The pack removes x's first revision: undoing t1 would find nothing to go back to.
        source.pack(t1, false)
        expect(tryUndo(source, t1)).to.equal('UndoError')
        copyTransactions(source, destination)
        expect(tryUndo(destination, t1)).to.equal('UndoError')
        expect(stateOf(destination.loadBefore(x, destination.lastTransaction() + 1n)!.data)).to.deep.equal({ value: 2 })
      })
    }
  }

  it('another instance of the destination file hands out no oid a restore wrote, once it saw the restore', () => {
    using source = kinds.memory!()
    const restored = Array.from({ length: 10 }, () => source.newOid())
    commitRecords(source, restored.map((o) => [o, 0n, record({ value: Number(o) })]))
    const file = freshSQLiteFile('wendelin-review-copy-')
    using other = SQLiteStorage.open(file)
    other.newOid() // reserves a block of oids in the file, before the copy
    {
      using destination = SQLiteStorage.open(file)
      copyTransactions(source, destination)
    }
    other.lastTransaction() // as a connection does at its next transaction
    const oid = other.newOid()
    expect(restored.includes(oid), `oid 0x${oid.toString(16)}`).to.equal(false)
    commitRecords(other, [[oid, 0n, record({ value: 0 })]])
  })

  for (const [to, makeDestination] of Object.entries(kinds)) {
    it(`sqlite into ${to}, the source packed during the copy: what the copy holds undoes as the source would`, () => {
      using source = kinds.sqlite!()
      using destination = makeDestination()
      const x = source.newOid()
      const y = source.newOid()
      const ty = commitRecords(source, [[y, 0n, record({ value: 0 })]])
      const t0 = commitRecords(source, [[x, 0n, record({ value: 1 })]])
      const t1 = commitRecords(source, [[x, t0, record({ value: 2 })]])
      commitRecords(source, [[y, ty, record({ value: 3 })]])
      let packed = false
      // The pack comes after the first transaction is copied: x's first revision goes before it is.
      copyTransactions(source, destination, {
        onProgress: () => {
          if (!packed) source.pack(t1, false)
          packed = true
        },
      })
      expect(tryUndo(source, t1)).to.equal('UndoError')
      expect(tryUndo(destination, t1)).to.equal('UndoError')
      expect(stateOf(destination.loadBefore(x, destination.lastTransaction() + 1n)!.data)).to.deep.equal({ value: 2 })
    })
  }

  it('oids handed out after a restore stay above every oid restored, even once a pack took the objects away', () => {
    const file = freshSQLiteFile('wendelin-review-copy-')
    {
      using s = SQLiteStorage.open(file)
      const t = (tid: Tid, oid: bigint): TransactionRecord => ({ tid, status: ' ', user: '', description: '', extension: {}, records: [{ oid, tid, data: record({ value: 1 }) }] })
      s.restore!(t(100n, 0n)) // the root, referring to nothing
      s.restore!(t(200n, 500n)) // an object nothing refers to
      s.pack(200n, true) // takes it away
    }
    using again = SQLiteStorage.open(file)
    expect(again.newOid() > 500n).to.equal(true)
  })
})
