// DB and Connection: root creation, add/get, joining, commit of reachable new objects, abort,
// failed commits, close rules and the pool (ZODB's testConnection and testZODB).
import { expect } from 'chai'
import * as transaction from '@wendelin/transaction'
import { TransactionFailedError, TransactionManager, TransientError } from '@wendelin/transaction'
import {
  ConflictError,
  ConnectionStateError,
  DB,
  InvalidObjectReference,
  MemoryStorage,
  POSKeyError,
  PersistentMapping,
  ReadConflictError,
  ReadOnlyError,
  Root,
  UnserializableError,
  type Oid,
  type Tid,
} from '@wendelin/zodb'

import { Item, newDB, session, type AppRoot } from './helpers.js'

describe('DB and Connection', () => {
  describe('the root', () => {
    it('is created on first open and found by later databases on the same storage', async () => {
      const storage = new MemoryStorage()
      const db = await DB.open<AppRoot>(storage)
      expect(storage.len()).to.equal(1)
      const s = session(db)
      expect(s.root).to.be.instanceOf(Root)
      expect(s.root._p_oid).to.equal(0n)
      s.root.answer = 42
      s.tm.commit()
      const again = new DB<AppRoot>(storage)
      expect(storage.len()).to.equal(1)
      expect(session(again).root.answer).to.equal(42)
    })

    it('reads as in the issue: DB.open, attributes on the root, the default transaction manager', async () => {
      const db = await DB.open<{ accounts: PersistentMapping<string, Item> } & Root>('memory:')
      const conn = db.open()
      conn.root.accounts = new PersistentMapping()
      conn.root.accounts.set('alice', Object.assign(new Item(), { name: 'alice', value: 10 }))
      transaction.commit()
      const other = db.open({ transactionManager: new TransactionManager() })
      expect(other.root.accounts.get('alice')!.value).to.equal(10)
      conn.close()
      other.close()
      db.close()
    })
  })

  describe('with the async-scoped default manager', () => {
    it('gives each scope its own connection transaction', async () => {
      const db = newDB()
      await db.transaction((conn) => {
        conn.root.one = new Item('one', 0)
        conn.root.two = new Item('two', 0)
      })
      const tick = () => new Promise((r) => setImmediate(r))
      const work = (name: string) =>
        transaction.manager.scope(async () => {
          const conn = db.open()
          ;(conn.root[name] as Item).value = `set by ${name}`
          await tick() // the other scope runs here, with changes of its own
          expect(transaction.get().resources).to.deep.equal([conn])
          transaction.commit()
          conn.close()
        })
      await Promise.all([work('one'), work('two')])
      const check = session(db)
      expect([(check.root.one as Item).value, (check.root.two as Item).value]).to.deep.equal(['set by one', 'set by two'])
    })

    it('a connection opened outside any scope and closed in one stops following the outer transactions', async () => {
      const db = newDB()
      const conn = db.open() // registers with the root manager
      conn.root.x = new Item('x', 1)
      transaction.commit()
      await transaction.manager.scope(async () => conn.close())
      let outerAborted!: () => void
      const outerAbort = new Promise<void>((resolve) => (outerAborted = resolve))
      // Made outside the scope below: its callback runs with the root manager current.
      void new Promise((resolve) => setTimeout(resolve, 10)).then(() => {
        transaction.abort()
        outerAborted()
      })
      await transaction.manager.scope(async () => {
        const reused = db.open()
        expect(reused).to.equal(conn)
        ;(reused.root.x as Item).value = 42
        await outerAbort // the root's transaction ends meanwhile: not ours
        transaction.commit()
        reused.close()
      })
      expect((session(db).root.x as Item).value).to.equal(42)
    })
  })

  describe('add and get', () => {
    it('gives an added object an oid at once and returns it by oid', () => {
      const s = session(newDB())
      const item = new Item('x')
      s.conn.add(item)
      expect(item._p_oid).to.be.a('bigint')
      expect(item._p_jar).to.equal(s.conn)
      expect(s.conn.get(item._p_oid!)).to.equal(item)
      s.conn.add(item) // again: no-op
      s.root.item = item
      s.tm.commit()
      expect(s.conn.get(item._p_oid!)).to.equal(item)
      expect(item._p_status).to.equal('saved')
    })

    it('refuses an object of another connection', () => {
      const db = newDB()
      const a = session(db)
      const b = session(db)
      const item = new Item()
      a.conn.add(item)
      expect(() => b.conn.add(item)).to.throw(InvalidObjectReference)
      a.tm.abort()
    })

    it('raises POSKeyError for an oid that does not exist', () => {
      const s = session(newDB())
      expect(() => s.conn.get(12345n)).to.throw(POSKeyError)
    })

    it('keeps object identity per connection and separate copies across connections', () => {
      const db = newDB()
      const a = session(db)
      a.root.item = new Item('x')
      a.tm.commit()
      const b = session(db)
      expect(a.root.item).to.equal(a.root.item)
      expect(b.root.item).to.not.equal(a.root.item)
      expect((b.root.item as Item)._p_oid).to.equal((a.root.item as Item)._p_oid)
    })

    it('gets an object whose record refers to itself (its ghost was made while decoding it)', () => {
      const db = newDB()
      const a = session(db)
      const ring = new Item('ring')
      ring.value = ring
      a.root.ring = ring
      a.tm.commit()
      const b = session(db)
      const got = b.conn.get(ring._p_oid!) as Item
      expect(got.name).to.equal('ring')
      expect(got.value).to.equal(got)
    })

    it('opens the root in later connections when it refers to itself', () => {
      const db = newDB()
      const a = session(db)
      a.root.self = a.root
      a.tm.commit()
      const b = session(db)
      expect(b.root.self).to.equal(b.root)
    })
  })

  describe('commit', () => {
    it('joins the transaction on the first change only', () => {
      const s = session(newDB())
      const txn = s.tm.get()
      expect(txn.resources).to.have.length(0)
      void s.root.item // reading does not join
      expect(txn.resources).to.have.length(0)
      s.root.x = 1
      s.root.y = 2
      expect(txn.resources).to.deep.equal([s.conn])
      s.tm.commit()
    })

    it('refuses to commit a new object made a ghost before it was saved, and stores nothing', () => {
      const db = newDB()
      const s = session(db)
      const before = db.lastTransaction()
      const item = new Item('fresh', 5)
      s.root.item = item
      s.conn.add(item)
      item._p_invalidate() // its state is gone: only the in-memory object had it
      expect(() => s.tm.commit()).to.throw(UnserializableError, /made a ghost \(_p_invalidate\) before it was ever saved/)
      s.tm.abort()
      expect(db.lastTransaction()).to.equal(before)
      expect(session(db).root.item).to.equal(undefined)
    })

    it('stores every new object reachable from changed objects, through plain values too', () => {
      const db = newDB()
      const s = session(db)
      const leaf = new Item('leaf')
      const mid = new Item('mid', { deep: [new Map([['k', leaf]])] })
      s.root.mid = mid
      s.tm.commit()
      expect(leaf._p_oid).to.be.a('bigint')
      expect(leaf._p_status).to.equal('saved')
      const other = session(db)
      const m = (other.root.mid as Item).value as { deep: Map<string, Item>[] }
      expect(m.deep[0]!.get('k')!.name).to.equal('leaf')
    })

    it('does not store an object whose change was taken back with _p_changed = false', () => {
      const db = newDB()
      const s = session(db)
      const item = new Item('x', 1)
      s.root.item = item
      s.tm.commit()
      item.value = 2
      item._p_changed = false
      s.tm.commit()
      expect(db.history(item._p_oid!, 10)).to.have.length(1)
    })

    it('commits nothing when nothing changed', () => {
      const db = newDB()
      const s = session(db)
      const last = db.lastTransaction()
      s.tm.commit()
      expect(db.lastTransaction()).to.equal(last)
    })

    it('sets the transaction metadata on the storage record', () => {
      const db = newDB()
      const s = session(db)
      const txn = s.tm.get()
      txn.note('set x')
      txn.setUser('alice')
      txn.setExtendedInfo('why', 'testing')
      s.root.x = 1
      s.tm.commit()
      const [h] = db.history(0n)
      expect(h!.description).to.equal('set x')
      expect(h!.user).to.equal('/ alice')
      expect(h!.extension).to.deep.equal({ why: 'testing' })
    })
  })

  describe('abort', () => {
    it('discards changes: changed objects reload their committed state', () => {
      const s = session(newDB())
      const item = new Item('x', 1)
      s.root.item = item
      s.tm.commit()
      item.value = 2
      ;(item as unknown as Record<string, unknown>).extra = true
      s.tm.abort()
      expect(item.value).to.equal(1)
      expect((item as unknown as Record<string, unknown>).extra).to.equal(undefined)
      expect(item._p_status).to.equal('saved')
    })

    it('makes objects added in the transaction unsaved again, with their state', () => {
      const s = session(newDB())
      const item = new Item('new', 5)
      s.conn.add(item)
      s.root.item = item
      s.tm.abort()
      expect(item._p_oid).to.equal(null)
      expect(item._p_jar).to.equal(null)
      expect(item.value).to.equal(5)
      expect(s.root.item).to.equal(undefined)
      // It can be added again later.
      s.root.item = item
      s.tm.commit()
      expect(item._p_status).to.equal('saved')
    })

    it('happens when a new transaction begins (begin implies abort)', () => {
      const s = session(newDB())
      s.root.x = 1
      s.tm.commit()
      s.root.x = 2
      s.tm.begin()
      expect(s.root.x).to.equal(1)
    })
  })

  describe('a failing commit', () => {
    it('sticks: the transaction cannot commit again until aborted, and the database is unchanged', () => {
      const db = newDB()
      const s = session(db)
      s.root.ok = new Item('ok')
      s.tm.commit()
      const last = db.lastTransaction()
      ;(s.root.ok as Item).value = 'changed'
      s.root.bad = { fn: () => 0 }
      expect(() => s.tm.commit()).to.throw(UnserializableError)
      expect(() => s.tm.commit()).to.throw(TransactionFailedError)
      expect(db.lastTransaction()).to.equal(last)
      s.tm.abort()
      expect((s.root.ok as Item).value).to.equal(0)
      expect(s.root.bad).to.equal(undefined)
      s.root.good = 1
      s.tm.commit()
      expect(db.lastTransaction() > last).to.equal(true)
    })
  })

  describe('read-only databases', () => {
    it('over an empty read-only storage have no root to read', () => {
      const ro = new DB<AppRoot>(new MemoryStorage({ readOnly: true }))
      expect(() => session(ro).root).to.throw(POSKeyError)
    })

    it('refuse the first change of an object', () => {
      const storage = new MemoryStorage()
      const db = new DB<AppRoot>(storage)
      const s = session(db)
      s.root.x = 1
      s.tm.commit()
      const roStorage = new Proxy(storage, {
        get(target, key) {
          if (key === 'isReadOnly') return () => true
          const v = Reflect.get(target, key, target) as unknown
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
        },
      })
      const ro = new DB<AppRoot>(roStorage)
      const r = session(ro)
      expect(r.root.x).to.equal(1)
      expect(() => (r.root.x = 2)).to.throw(ReadOnlyError)
      expect(r.root.x).to.equal(1)
    })
  })

  describe('close', () => {
    it('is an error while the connection has changes in a transaction', () => {
      const s = session(newDB())
      s.root.x = 1
      expect(() => s.conn.close()).to.throw(ConnectionStateError, /joined to a transaction/)
      s.tm.abort()
      s.conn.close()
      expect(s.conn.opened).to.equal(false)
    })

    it('calls the close callbacks, and a closed connection loads nothing', () => {
      const s = session(newDB())
      const item = new Item('x')
      s.root.item = item
      s.tm.commit()
      item._p_invalidate()
      let called = 0
      s.conn.onCloseCallback(() => called++)
      s.conn.close()
      expect(called).to.equal(1)
      expect(() => item.name).to.throw(ConnectionStateError, /connection is closed/)
      expect(() => s.conn.get(0n)).to.throw(ConnectionStateError)
    })

    it('returns the connection to the pool, and open() reuses it with its cache', () => {
      const db = newDB({ poolSize: 1 })
      const tm = new TransactionManager()
      const c1 = db.open({ transactionManager: tm })
      const root = c1.root
      c1.close()
      expect(db.pooledCount).to.equal(1)
      const c2 = db.open({ transactionManager: tm })
      expect(c2).to.equal(c1)
      expect(c2.root).to.equal(root)
      const c3 = db.open({ transactionManager: tm })
      expect(c3).to.not.equal(c2)
      c2.close()
      c3.close() // the pool is full: c3 is dropped
      expect(db.pooledCount).to.equal(1)
      expect(db.connectionCount).to.equal(1)
    })

    it('a pooled connection still hears of other commits', () => {
      const db = newDB()
      const a = session(db)
      a.root.x = 1
      a.tm.commit()
      expect(a.root.x).to.equal(1)
      const w = session(db)
      a.conn.close()
      w.root.x = 2
      w.tm.commit()
      const again = db.open({ transactionManager: new TransactionManager() })
      expect(again).to.equal(a.conn)
      expect(again.root.x).to.equal(2)
    })

    it('closing the database closes its connections, which stop following transactions', () => {
      const db = newDB()
      const tm = new TransactionManager()
      const conn = db.open({ transactionManager: tm })
      let closed = 0
      conn.onCloseCallback(() => closed++)
      conn.root.x = 1
      tm.commit()
      db.close()
      expect(conn.opened).to.equal(false)
      expect(closed).to.equal(1)
      expect(() => tm.begin()).to.not.throw()
      expect(() => conn.root).to.throw(ConnectionStateError)
      tm.commit()
    })

    it('a connection closed after a failed commit and reused from the pool keeps its new changes when the old transaction is aborted', () => {
      const db = newDB()
      const a = session(db)
      a.root.i = new Item('i', 0)
      a.tm.commit()
      const b = session(db)
      ;(a.root.i as Item).value = 1
      ;(b.root.i as Item).value = 2
      a.tm.commit()
      expect(() => b.tm.commit()).to.throw(ConflictError)
      b.conn.close() // allowed: the failed commit tpc_aborted the connection
      const tm2 = new TransactionManager()
      const reused = db.open({ transactionManager: tm2 })
      expect(reused).to.equal(b.conn)
      reused.root.j = new Item('j', 5)
      b.tm.abort() // ends the hosed transaction, which still lists the connection
      tm2.commit()
      expect((session(db).root.j as Item | undefined)?.value).to.equal(5)
    })

    it('supports using / Symbol.dispose for connections and databases', () => {
      let conn
      {
        using db = newDB()
        {
          using c = db.open({ transactionManager: new TransactionManager() })
          conn = c
          expect(c.opened).to.equal(true)
        }
        expect(conn.opened).to.equal(false)
        expect(db.closed).to.equal(false)
        conn = db
      }
      expect(conn.closed).to.equal(true)
    })
  })

  describe('several connections in one transaction', () => {
    it('commit together through one storage commit', () => {
      const db = newDB()
      const tm = new TransactionManager()
      const a = db.open({ transactionManager: tm })
      const b = db.open({ transactionManager: tm })
      a.root.fromA = new Item('a')
      tm.commit()
      b.sync()
      ;(b.root.fromA as Item).value = 'changed by b'
      a.root.more = 1
      const last = db.lastTransaction()
      tm.commit()
      const history = [...db.storage.iterator(last + 1n)]
      expect(history).to.have.length(1)
      const check = session(db)
      expect((check.root.fromA as Item).value).to.equal('changed by b')
      expect(check.root.more).to.equal(1)
    })

    it('refuse a reference from one connection to an object of the other', () => {
      const db = newDB()
      const tm = new TransactionManager()
      const a = db.open({ transactionManager: tm })
      const b = db.open({ transactionManager: tm })
      a.root.item = new Item('a')
      tm.commit()
      b.sync()
      b.root.alias = a.root.item
      expect(() => tm.commit()).to.throw(InvalidObjectReference, /belongs to another connection/)
      tm.abort()
    })
  })

  describe('transaction metadata that cannot be stored', () => {
    it('fails the commit before anything is written', () => {
      const db = newDB()
      const s = session(db)
      const last = db.lastTransaction()
      s.tm.get().setExtendedInfo('callback', () => 1)
      s.root.x = 1
      expect(() => s.tm.commit()).to.throw()
      expect(db.lastTransaction()).to.equal(last)
      s.tm.abort()
      expect(s.root.x).to.equal(undefined)
    })
  })

  describe('savepoint, then abort', () => {
    it('gives a new object its state back before it becomes unsaved', () => {
      const s = session(newDB())
      const item = new Item('new', 1)
      s.root.item = item
      const sp = s.tm.savepoint()
      item.value = 2
      sp.rollback() // the new object is a ghost of its savepoint state now
      s.tm.abort()
      expect(item._p_status).to.equal('unsaved')
      expect([item.name, item.value]).to.deep.equal(['new', 1])
    })
  })

  describe('pack and history through the database', () => {
    it('drops old revisions and unreachable objects; open connections read on', () => {
      const db = newDB()
      const s = session(db)
      const kept = new Item('kept', 1)
      const dropped = new Item('dropped', 1)
      s.root.kept = kept
      s.root.dropped = dropped
      s.tm.commit()
      kept.value = 2
      s.tm.commit()
      expect(db.history(kept._p_oid!, 10)).to.have.length(2)
      delete s.root.dropped
      s.root._p_changed = true
      s.tm.commit()
      db.pack(db.lastTransaction())
      expect(db.history(kept._p_oid!, 10)).to.have.length(1)
      expect(() => db.history(dropped._p_oid!)).to.throw(POSKeyError)
      kept._p_invalidate()
      expect(kept.value).to.equal(2)
      const other = session(db)
      expect((other.root.kept as Item).value).to.equal(2)
      expect(other.root.dropped).to.equal(undefined)
    })
  })

  describe('prefetch', () => {
    it("asks a storage that can prefetch for the ghosts' oids at the connection's snapshot", async () => {
      const memory = new MemoryStorage()
      const asked: [Oid[], Tid | undefined][] = []
      const prefetching = new Proxy(memory, {
        get(target, key) {
          if (key === 'prefetch') return async (oids: Iterable<Oid>, tid?: Tid) => void asked.push([[...oids], tid])
          const v = Reflect.get(target, key, target) as unknown
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
        },
      })
      const db = new DB<AppRoot>(prefetching)
      const s = session(db)
      const a = new Item('a')
      const b = new Item('b')
      s.root.a = a
      s.root.b = b
      s.tm.commit()
      const other = session(db)
      const ga = other.root.a as Item
      const gb = other.root.b as Item
      await other.conn.prefetch(ga, gb, 12345n)
      expect(asked).to.deep.equal([[[a._p_oid, b._p_oid, 12345n], other.conn.before]])
      void ga.name // loaded: no longer a ghost, not asked for again
      await other.conn.prefetch(ga)
      expect(asked).to.have.length(1)
    })

    it('resolves at once on a storage without prefetch', async () => {
      const s = session(newDB())
      await s.conn.prefetch(s.root)
    })
  })

  describe('readCurrent', () => {
    /** Two sessions of a database whose root has `guard` and `other`, committed by `a`. */
    function guarded() {
      const db = newDB()
      const a = session(db)
      a.root.guard = new Item('guard', 1)
      a.root.other = new Item('other', 1)
      a.tm.commit()
      return { a, b: session(db) }
    }

    it('fails the commit with ReadConflictError if an object read was changed meanwhile', () => {
      const { a, b } = guarded()
      a.conn.readCurrent(a.root.guard as Item)
      ;(a.root.other as Item).value = 2
      ;(b.root.guard as Item).value = 5
      b.tm.commit()
      expect(() => a.tm.commit()).to.throw(ReadConflictError)
      a.tm.abort()
      // Without a concurrent change it commits.
      a.conn.readCurrent(a.root.guard as Item)
      ;(a.root.other as Item).value = 3
      a.tm.commit()
    })

    it('checks an object whose change was taken back (_p_changed = false): it is not stored', () => {
      const { a, b } = guarded()
      const guard = b.root.guard as Item
      b.conn.readCurrent(guard)
      guard.value = 5
      guard._p_changed = false
      ;(b.root.other as Item).value = 7
      ;(a.root.guard as Item).value = 2
      a.tm.commit()
      expect(() => b.tm.commit()).to.throw(ReadConflictError)
      b.tm.abort()
    })
  })

  describe('db.transaction', () => {
    it('runs a function in its own connection and transaction, commits, and retries conflicts', async () => {
      const db = newDB()
      await db.transaction((conn) => {
        conn.root.n = new Item('n', 0)
      })
      let attempts = 0
      const result = await db.transaction(async (conn) => {
        attempts++
        const n = conn.root.n as Item
        n.value = (n.value as number) + 1
        if (attempts === 1) {
          // Someone else commits the same object meanwhile.
          await db.transaction((other) => {
            ;(other.root.n as Item).value = 100
          })
        }
        return n.value
      })
      expect(attempts).to.equal(2)
      expect(result).to.equal(101)
      const check = session(db)
      expect((check.root.n as Item).value).to.equal(101)
      expect(db.connectionCount).to.be.at.least(1)
    })
  })

  describe('ConflictError', () => {
    it('is a TransientError carrying oid, class and serials, retried by tm.run', () => {
      const db = newDB()
      const a = session(db)
      a.root.item = new Item('x', 0)
      a.tm.commit()
      const b = session(db)
      ;(a.root.item as Item).value = 1
      ;(b.root.item as Item).value = 2
      a.tm.commit()
      let error: unknown
      try {
        b.tm.commit()
      } catch (e) {
        error = e
      }
      expect(error).to.be.instanceOf(ConflictError)
      expect(error).to.be.instanceOf(TransientError)
      const c = error as ConflictError
      expect(c.oid).to.equal((a.root.item as Item)._p_oid)
      expect(c.className).to.equal('test.Item')
      expect(c.oldSerial).to.be.a('bigint')
      expect(c.committedSerial! > c.oldSerial!).to.equal(true)
      expect(c.serials).to.deep.equal([c.committedSerial, c.oldSerial])
      b.tm.abort()
      let tries = 0
      b.tm.run(() => {
        tries++
        ;(b.root.item as Item).value = 3
        if (tries === 1) {
          ;(a.root.item as Item).value = 4
          a.tm.commit()
        }
      })
      expect(tries).to.equal(2)
      a.tm.begin()
      expect((a.root.item as Item).value).to.equal(3)
    })
  })

  describe('invalidations told while a connection finishes its commit', () => {
    /** A storage that, like a client storage, tells another commit's invalidation during our tpc_finish, before our own. */
    class EarlyNewsStorage extends MemoryStorage {
      news: { tid: Tid; oids: Oid[] } | null = null
      readonly told: { invalidate(tid: Tid, oids: readonly Oid[]): void }[] = []
      override addListener(listener: Parameters<MemoryStorage['addListener']>[0]): void {
        this.told.push(listener)
        super.addListener(listener)
      }
      override tpc_finish(txn: Parameters<MemoryStorage['tpc_finish']>[0], onTid?: (tid: Tid) => void): Tid {
        const news = this.news
        this.news = null
        if (news !== null) for (const l of this.told) l.invalidate(news.tid, news.oids)
        return super.tpc_finish(txn, onTid)
      }
    }

    it('queues other commits’ invalidations and ignores only its own', () => {
      const storage = new EarlyNewsStorage()
      const db = new DB<AppRoot>(storage)
      const a = session(db)
      a.tm.begin()
      a.root.mine = new Item('mine', 1)
      a.root.theirs = new Item('theirs', 2)
      a.tm.commit()
      const theirs = a.root.theirs as Item
      const mine = a.root.mine as Item
      a.tm.begin()
      mine.value = 10
      storage.news = { tid: a.conn.before, oids: [theirs._p_oid!] }
      a.tm.commit()
      a.tm.begin()
      expect(theirs._p_status, 'an object another commit changed').to.equal('ghost')
      expect(mine._p_status, 'the object this connection just stored').to.equal('saved')
      expect(mine.value).to.equal(10)
      db.close()
    })
  })
})

describe('pooled connections', () => {
  it('do not keep the oids of every commit while they wait in the pool', () => {
    const db = newDB()
    const w = session(db)
    w.root.a = new Item('a')
    w.root.b = new Item('b')
    w.tm.commit()
    const pooled = session(db)
    const a = pooled.root.a as Item
    void a.name
    pooled.conn.close()
    expect(db.pooledCount).to.equal(1)
    const gc = (globalThis as { gc?: () => void }).gc!
    gc()
    const before = process.memoryUsage().heapUsed
    // What the database tells every connection of commits (here of a million new objects).
    for (let t = 1n; t <= 100n; t++) {
      const oids = Array.from({ length: 10_000 }, (_, i) => 1000n + t * 10_000n + BigInt(i))
      pooled.conn._invalidate(t, oids)
    }
    gc()
    expect(process.memoryUsage().heapUsed - before).to.be.below(10e6)
    // The objects it holds are still made ghosts of their new state when it is reopened.
    ;(w.root.a as Item).name = 'a2'
    w.tm.commit()
    const again = db.open({ transactionManager: new TransactionManager() })
    expect(again).to.equal(pooled.conn)
    expect((again.root as unknown as { a: Item }).a).to.equal(a)
    expect(a.name).to.equal('a2')
    again.close()
  })
})
