// Review findings on copyTransactions and restore.
import { expect } from 'chai'
import { MemoryStorage, SQLiteStorage, UndoError, copyTransactions, type Storage, type Tid, type TransactionRecord } from '@wendelin/zodb'

import { commitRecords, meta, record, stateOf } from './storage-conformance.js'
import { freshSQLiteFile, removeSQLiteFiles } from './sqlite-helpers.js'

const kinds: Record<string, () => Storage> = {
  memory: () => new MemoryStorage(),
  sqlite: () => SQLiteStorage.open(freshSQLiteFile('wendelin-review-copy-')),
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

describe('copyTransactions: review', function () {
  after(removeSQLiteFiles)

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
