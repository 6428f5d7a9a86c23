// Resource lifecycle of the storages: `using` closes them, and a storage used after close (an
// iterator left half-way included) says which storage is closed instead of giving data or a
// low-level error.
import { expect } from 'chai'
import { ConnectionStateError, DB, MemoryStorage, POSError, SQLiteStorage, registerStorageScheme, type Storage } from '@wendelin/zodb'
import { TransactionManager } from '@wendelin/transaction'

import { freshSQLiteFile, removeSQLiteFiles } from './sqlite-helpers.js'

after(removeSQLiteFiles)

/** A storage with `n` transactions after the root's. */
function filled(storage: Storage, n: number): Storage {
  const tm = new TransactionManager()
  const db = new DB(storage)
  const c = db.open({ transactionManager: tm })
  for (let i = 0; i < n; i++) {
    ;(c.root as Record<string, unknown>).x = i
    tm.commit()
  }
  c.close()
  return storage
}

const kinds: Array<[string, () => Storage]> = [
  ['MemoryStorage', () => new MemoryStorage()],
  ['SQLiteStorage', () => new SQLiteStorage(freshSQLiteFile())],
]

for (const [name, make] of kinds) {
  describe(`${name} lifecycle`, () => {
    it('is closed by `using` (typed as a Storage), and a second close is harmless', () => {
      let kept: Storage
      {
        using s: Storage = make()
        kept = s
        s.lastTransaction()
      }
      expect(kept.closed).to.equal(true)
      kept.close()
      kept[Symbol.dispose]()
    })

    it('says it is closed to an iterator that goes on after the close', () => {
      const s = filled(make(), 150) // more than one page of the SQLite iterator
      const it = s.iterator()
      it.next()
      s.close()
      expect(() => it.next()).to.throw(ConnectionStateError, /is closed/)
    })

    it('says it is closed when asked its size or length after the close', () => {
      const s = filled(make(), 1)
      s.close()
      expect(() => s.getSize()).to.throw(ConnectionStateError, /is closed/)
      expect(() => s.len()).to.throw(ConnectionStateError, /is closed/)
    })
  })
}

describe('SQLiteStorage lifecycle', () => {
  it('an iterator abandoned half-way (break) leaves the file free for writers', () => {
    const s = filled(new SQLiteStorage(freshSQLiteFile()), 150) as SQLiteStorage
    for (const t of s.iterator()) {
      void t
      break
    }
    filled(s, 1) // a write right after: nothing left locked
    s.close()
  })

  it('says which storage is closed when asked its page cache after the close', () => {
    const s = new SQLiteStorage(freshSQLiteFile())
    s.close()
    expect(() => s.pageCacheKiB).to.throw(ConnectionStateError, /SQLiteStorage\(.*\) is closed/)
  })
})

describe('DB.open(spec) lifecycle', () => {
  it('closes the storage it opened when the database cannot start over it', async () => {
    const opened: Storage[] = []
    registerStorageScheme('unreadable-root', () => {
      const s = new MemoryStorage()
      s.loadBefore = () => {
        throw new POSError('the root cannot be read')
      }
      opened.push(s)
      return s
    })
    let error: unknown
    try {
      await DB.open('unreadable-root:')
    } catch (e) {
      error = e
    }
    expect(error).to.be.instanceOf(POSError)
    expect(opened).to.have.length(1)
    expect(opened[0]!.closed).to.equal(true, 'the storage DB.open opened is left open')
  })
})
