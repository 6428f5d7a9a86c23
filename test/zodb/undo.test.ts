// db.undo: through storages that can undo (SQLiteStorage, MemoryStorage), in the transaction that
// commits it, alone or beside a connection's own changes; refused where the storage cannot undo.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import { DB, MemoryStorage, POSError, SQLiteStorage, UndoError } from '@wendelin/zodb'

import { Item, newDB, session, type AppRoot } from './helpers.js'

describe('db.undo', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'zodb-undo-'))
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  it('puts the objects a transaction wrote back to their previous revisions', () => {
    const db = new DB<AppRoot>(new SQLiteStorage(path.join(dir, 'db.sqlite'), { durability: 'normal' }))
    try {
      const s = session(db)
      s.root.item = new Item('x', 1)
      s.tm.commit()
      ;(s.root.item as Item).value = 2
      s.tm.commit()
      const bad = db.lastTransaction()
      db.undo(bad, { transactionManager: s.tm })
      s.tm.commit()
      expect(db.lastTransaction() > bad).to.equal(true)
      expect((s.root.item as Item).value).to.equal(1)
      const other = session(db)
      expect((other.root.item as Item).value).to.equal(1)
    } finally {
      db.close()
    }
  })

  it('commits in the same transaction as a connection writing to the same storage', () => {
    const db = new DB<AppRoot>(new SQLiteStorage(path.join(dir, 'db.sqlite'), { durability: 'normal' }))
    try {
      const s = session(db)
      s.root.a = new Item('a', 1)
      s.root.b = new Item('b', 1)
      s.tm.commit()
      ;(s.root.a as Item).value = 2
      s.tm.commit()
      const undone = db.lastTransaction()
      db.undo(undone, { transactionManager: s.tm })
      ;(s.root.b as Item).value = 5
      s.tm.commit()
      const check = session(db)
      expect([(check.root.a as Item).value, (check.root.b as Item).value]).to.deep.equal([1, 5])
    } finally {
      db.close()
    }
  })

  it('works the same on MemoryStorage, and lists undoable transactions', () => {
    const db = newDB()
    const s = session(db)
    s.root.item = new Item('x', 1)
    s.tm.get().note('create')
    s.tm.commit()
    ;(s.root.item as Item).value = 2
    s.tm.get().note('change')
    s.tm.commit()
    const log = db.undoLog(2)
    expect(log.map((e) => e.description)).to.deep.equal(['change', 'create'])
    db.undo(log[0]!.tid, { transactionManager: s.tm })
    s.tm.commit()
    expect((s.root.item as Item).value).to.equal(1)
  })

  it('fails the commit with UndoError when a later transaction changed the objects', () => {
    const db = newDB()
    const s = session(db)
    s.root.item = new Item('x', 1)
    s.tm.commit()
    const first = db.lastTransaction()
    ;(s.root.item as Item).value = 2
    s.tm.commit()
    db.undo(first, { transactionManager: s.tm })
    expect(() => s.tm.commit()).to.throw(UndoError, /changed by a later transaction/)
    s.tm.abort()
    expect((s.root.item as Item).value).to.equal(2)
  })

  it('is refused where the storage cannot undo', () => {
    const memory = new MemoryStorage()
    const noUndo = new Proxy(memory, {
      get(target, key) {
        if (key === 'supportsUndo') return () => false
        const v = Reflect.get(target, key, target) as unknown
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
      },
    })
    const db = new DB(noUndo)
    expect(() => db.undo(db.lastTransaction(), { transactionManager: new TransactionManager() })).to.throw(POSError, /does not support undo/)
  })
})
