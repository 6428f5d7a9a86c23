// The storage conformance suite: what every storage must do, as ZODB's storage test mix-ins
// (BasicStorage, SynchronizedStorage, RevisionStorage, HistoryStorage, IteratorStorage,
// PackableStorage, ConflictResolution, ReadOnlyStorage, MTStorage) check it. Each storage's test
// file calls `describeStorageConformance(name, factory)`; the factory makes a fresh, empty
// storage each time it is called.
import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import {
  ConflictError,
  DB,
  POSKeyError,
  Persistent,
  PersistentMapping,
  PersistentReference,
  ReadConflictError,
  ReadOnlyError,
  StorageTransactionError,
  UndoError,
  decodeForDump,
  encodeStateRecord,
  registerClass,
  tidToDate,
  type Oid,
  type Storage,
  type Tid,
  type TransactionMetaData,
} from '@wendelin/zodb'

export interface StorageFactoryOptions {
  readOnly?: boolean
}
export type StorageFactory = (options?: StorageFactoryOptions) => Storage | Promise<Storage>

/** A counter whose concurrent increments merge (the classic conflict-resolution example). */
export class ResolvingCounter extends Persistent {
  value = 0
  override _p_resolveConflict(old: Record<string, unknown> | null, committed: Record<string, unknown>, mine: Record<string, unknown>) {
    const values = [old?.value ?? 0, committed.value, mine.value]
    if (!values.every((v) => typeof v === 'number')) throw new Error('cannot add up values that are not numbers')
    const [o, c, m] = values as number[]
    return { value: c! + m! - o! }
  }
}
registerClass('test.conformance.ResolvingCounter', ResolvingCounter)

/** A class that does not resolve conflicts. */
export class PlainThing extends Persistent {
  value = 0
}
registerClass('test.conformance.PlainThing', PlainThing)

const noRefs = {
  persistentRef(): never {
    throw new Error('no persistent objects expected in this state')
  },
}

/** A record of class `className` with the given state (PersistentReference values are references). */
export function record(state: Record<string, unknown>, className = 'test.conformance.PlainThing'): Uint8Array {
  return encodeStateRecord(className, state, noRefs)
}

/** The state in a record, with references as `{ $ref, class }`. */
export function stateOf(data: Uint8Array): Record<string, unknown> {
  return decodeForDump(data).state as Record<string, unknown>
}

export function meta(description = '', user = '', extension: Record<string, unknown> = {}): TransactionMetaData {
  return { user, description, extension }
}

/** Commit one transaction that stores `records` (oid → [oldSerial, data]); returns its tid. */
export function commitRecords(storage: Storage, records: [Oid, Tid, Uint8Array][], txn: TransactionMetaData = meta()): Tid {
  storage.tpc_begin(txn)
  try {
    for (const [oid, serial, data] of records) storage.store(oid, serial, data, txn)
    storage.tpc_vote(txn)
    return storage.tpc_finish(txn)
  } catch (error) {
    storage.tpc_abort(txn)
    throw error
  }
}

/** Store one revision of `oid`; returns the new serial. */
export function storeRevision(storage: Storage, oid: Oid, oldSerial: Tid, state: Record<string, unknown>, txn?: TransactionMetaData): Tid {
  return commitRecords(storage, [[oid, oldSerial, record(state)]], txn)
}

const MAX = 0xffff_ffff_ffff_ffffn

export function describeStorageConformance(name: string, factory: StorageFactory): void {
  describe(`storage conformance: ${name}`, function () {
    let storage: Storage
    beforeEach(async () => {
      storage = await factory()
    })
    afterEach(() => {
      if (!storage.closed) storage.close()
    })

    describe('BasicStorage', () => {
      it('starts empty, writable, with a name and a stable sort key', () => {
        expect(storage.lastTransaction()).to.equal(0n)
        expect(storage.len()).to.equal(0)
        expect(storage.isReadOnly()).to.equal(false)
        expect(storage.getName()).to.be.a('string').that.is.not.empty
        expect(storage.sortKey()).to.equal(storage.sortKey())
        expect(storage.spec).to.be.a('string').and.match(/^[a-z][a-z0-9+.-]*:/)
      })

      it('hands out distinct new oids', () => {
        const oids = new Set<Oid>()
        for (let i = 0; i < 100; i++) oids.add(storage.newOid())
        expect(oids.size).to.equal(100)
        for (const oid of oids) expect(oid).to.be.a('bigint')
      })

      it('stores and loads a record', () => {
        const oid = storage.newOid()
        const data = record({ value: 7 })
        let seen: Tid | null = null
        const txn = meta()
        storage.tpc_begin(txn)
        storage.store(oid, 0n, data, txn)
        expect(storage.tpc_vote(txn)).to.deep.equal([])
        const tid = storage.tpc_finish(txn, (t) => (seen = t))
        expect(seen).to.equal(tid)
        expect(storage.lastTransaction()).to.equal(tid)
        const rev = storage.loadBefore(oid, MAX)!
        expect(rev.serial).to.equal(tid)
        expect(rev.nextSerial).to.equal(null)
        expect(Buffer.from(rev.data).equals(Buffer.from(data))).to.equal(true)
        expect(storage.len()).to.equal(1)
        expect(storage.getSize()).to.be.at.least(data.length)
      })

      it('gives strictly increasing tids that encode the commit time', () => {
        const oid = storage.newOid()
        let serial = 0n
        const tids: Tid[] = []
        for (let i = 0; i < 20; i++) {
          serial = storeRevision(storage, oid, serial, { value: i })
          tids.push(serial)
        }
        for (let i = 1; i < tids.length; i++) expect(tids[i]! > tids[i - 1]!).to.equal(true)
        expect(Math.abs(tidToDate(tids[0]!).getTime() - Date.now())).to.be.below(60_000)
      })

      it('raises POSKeyError for an oid never stored', () => {
        expect(() => storage.loadBefore(12345n, MAX)).to.throw(POSKeyError, /0x0000000000003039/)
        expect(() => storage.loadSerial(12345n, 1n)).to.throw(POSKeyError)
        expect(() => storage.history(12345n)).to.throw(POSKeyError)
      })

      it('raises ConflictError when the old serial is not the current one, and stores nothing', () => {
        const oid = storage.newOid()
        const s1 = storeRevision(storage, oid, 0n, { value: 1 })
        storeRevision(storage, oid, s1, { value: 2 })
        const txn = meta()
        storage.tpc_begin(txn)
        let error: unknown
        try {
          storage.store(oid, s1, record({ value: 3 }), txn)
          storage.tpc_vote(txn)
        } catch (e) {
          error = e
        }
        storage.tpc_abort(txn)
        expect(error).to.be.instanceOf(ConflictError)
        expect((error as ConflictError).oid).to.equal(oid)
        expect((error as ConflictError).oldSerial).to.equal(s1)
        expect(stateOf(storage.loadBefore(oid, MAX)!.data)).to.deep.equal({ value: 2 })
      })

      it('raises ConflictError when a new object is stored over an existing one', () => {
        const oid = storage.newOid()
        storeRevision(storage, oid, 0n, { value: 1 })
        expect(() => storeRevision(storage, oid, 0n, { value: 2 })).to.throw(ConflictError)
      })

      it('forgets everything on tpc_abort and stays usable', () => {
        const oid = storage.newOid()
        const txn = meta()
        storage.tpc_begin(txn)
        storage.store(oid, 0n, record({ value: 1 }), txn)
        storage.tpc_abort(txn)
        expect(() => storage.loadBefore(oid, MAX)).to.throw(POSKeyError)
        expect(storage.lastTransaction()).to.equal(0n)
        const tid = storeRevision(storage, oid, 0n, { value: 2 })
        expect(storage.loadBefore(oid, MAX)!.serial).to.equal(tid)
      })

      it('forgets a voted transaction on tpc_abort, and lastTransaction moves only at tpc_finish', () => {
        const oid = storage.newOid()
        const s1 = storeRevision(storage, oid, 0n, { value: 1 })
        const txn = meta()
        storage.tpc_begin(txn)
        storage.store(oid, s1, record({ value: 2 }), txn)
        storage.tpc_vote(txn)
        expect(storage.lastTransaction()).to.equal(s1)
        storage.tpc_abort(txn)
        expect(stateOf(storage.loadBefore(oid, MAX)!.data)).to.deep.equal({ value: 1 })
        expect(storage.lastTransaction()).to.equal(s1)
        expect(storage.history(oid, 10)).to.have.length(1)
        const s2 = storeRevision(storage, oid, s1, { value: 3 })
        expect(stateOf(storage.loadSerial(oid, s2))).to.deep.equal({ value: 3 })
      })

      it('keeps the last of two stores of one object in a transaction', () => {
        const oid = storage.newOid()
        const txn = meta()
        storage.tpc_begin(txn)
        storage.store(oid, 0n, record({ value: 1 }), txn)
        storage.store(oid, 0n, record({ value: 2 }), txn)
        storage.tpc_vote(txn)
        storage.tpc_finish(txn)
        expect(stateOf(storage.loadBefore(oid, MAX)!.data)).to.deep.equal({ value: 2 })
      })

      it('checks the current serial of objects read with readCurrent', () => {
        const a = storage.newOid()
        const b = storage.newOid()
        const sa = storeRevision(storage, a, 0n, { value: 1 })
        const txn = meta()
        storage.tpc_begin(txn)
        storage.checkCurrentSerialInTransaction(a, sa, txn)
        storage.store(b, 0n, record({ value: 1 }), txn)
        storage.tpc_vote(txn)
        storage.tpc_finish(txn)

        storeRevision(storage, a, sa, { value: 2 })
        const txn2 = meta()
        storage.tpc_begin(txn2)
        let error: unknown
        try {
          storage.checkCurrentSerialInTransaction(a, sa, txn2)
          storage.tpc_vote(txn2)
        } catch (e) {
          error = e
        }
        storage.tpc_abort(txn2)
        expect(error).to.be.instanceOf(ReadConflictError)
      })

      it('delivers invalidations to listeners in tid order, once per transaction', () => {
        const seen: [Tid, Oid[]][] = []
        const listener = { invalidate: (tid: Tid, oids: readonly Oid[]) => void seen.push([tid, [...oids]]) }
        storage.addListener(listener)
        const a = storage.newOid()
        const b = storage.newOid()
        const t1 = commitRecords(storage, [
          [a, 0n, record({ value: 1 })],
          [b, 0n, record({ value: 1 })],
        ])
        const t2 = storeRevision(storage, a, t1, { value: 2 })
        storage.removeListener(listener)
        storeRevision(storage, b, t1, { value: 2 })
        expect(seen.map(([t]) => t)).to.deep.equal([t1, t2])
        expect(seen[0]![1].sort()).to.deep.equal([a, b].sort())
        expect(seen[1]![1]).to.deep.equal([a])
      })

      it('refuses everything once closed', () => {
        storage.close()
        expect(storage.closed).to.equal(true)
        expect(() => storage.lastTransaction()).to.throw(Error)
        expect(() => storage.loadBefore(0n, MAX)).to.throw(Error)
      })
    })

    describe('SynchronizedStorage', () => {
      it('refuses store, vote and finish outside tpc_begin', () => {
        const txn = meta()
        expect(() => storage.store(storage.newOid(), 0n, record({}), txn)).to.throw(StorageTransactionError)
        expect(() => storage.tpc_vote(txn)).to.throw(StorageTransactionError)
        expect(() => storage.tpc_finish(txn)).to.throw(StorageTransactionError)
        expect(() => storage.checkCurrentSerialInTransaction(0n, 0n, txn)).to.throw(StorageTransactionError)
      })

      it('refuses calls with a transaction other than the committing one', () => {
        const txn = meta('one')
        const other = meta('other')
        storage.tpc_begin(txn)
        expect(() => storage.store(storage.newOid(), 0n, record({}), other)).to.throw(StorageTransactionError)
        expect(() => storage.tpc_vote(other)).to.throw(StorageTransactionError)
        expect(() => storage.tpc_finish(other)).to.throw(StorageTransactionError)
        expect(() => storage.tpc_begin(other)).to.throw(StorageTransactionError)
        storage.tpc_abort(other) // not the committing one: ignored
        storage.store(storage.newOid(), 0n, record({}), txn)
        storage.tpc_vote(txn)
        storage.tpc_finish(txn)
        expect(storage.len()).to.equal(1)
      })

      it('refuses tpc_finish before tpc_vote', () => {
        const txn = meta()
        storage.tpc_begin(txn)
        expect(() => storage.tpc_finish(txn)).to.throw(StorageTransactionError)
        storage.tpc_abort(txn)
      })
    })

    describe('RevisionStorage', () => {
      it('loads each revision by serial and reads before any tid', () => {
        const oid = storage.newOid()
        const serials: Tid[] = []
        let s = 0n
        for (let i = 0; i < 4; i++) serials.push((s = storeRevision(storage, oid, s, { value: i })))
        for (let i = 0; i < 4; i++) expect(stateOf(storage.loadSerial(oid, serials[i]!))).to.deep.equal({ value: i })
        expect(storage.loadBefore(oid, serials[0]!)).to.equal(null)
        for (let i = 1; i < 4; i++) {
          const rev = storage.loadBefore(oid, serials[i]!)!
          expect(rev.serial).to.equal(serials[i - 1])
          expect(rev.nextSerial).to.equal(serials[i])
          expect(stateOf(rev.data)).to.deep.equal({ value: i - 1 })
        }
        // Between two revisions: the older one.
        expect(storage.loadBefore(oid, serials[1]! + 0n)!.serial).to.equal(serials[0])
        expect(storage.loadBefore(oid, MAX)!.nextSerial).to.equal(null)
        expect(() => storage.loadSerial(oid, serials[3]! + 1n)).to.throw(POSKeyError)
      })
    })

    describe('HistoryStorage', () => {
      it('lists revisions newest first with their transactions', () => {
        const oid = storage.newOid()
        let s = 0n
        const serials: Tid[] = []
        for (let i = 0; i < 3; i++) serials.push((s = storeRevision(storage, oid, s, { value: i }, meta(`change ${i}`, `user${i}`, { i }))))
        const h = storage.history(oid, 10)
        expect(h.map((e) => e.tid)).to.deep.equal([...serials].reverse())
        expect(h[0]!.description).to.equal('change 2')
        expect(h[0]!.user).to.equal('user2')
        expect(h[0]!.extension).to.deep.equal({ i: 2 })
        expect(h[0]!.size).to.be.above(0)
        expect(h[0]!.time).to.be.instanceOf(Date)
        expect(storage.history(oid).length).to.equal(1)
        expect(storage.history(oid, 2).map((e) => e.tid)).to.deep.equal([serials[2], serials[1]])
      })
    })

    describe('IteratorStorage', () => {
      it('iterates over transactions and their records in tid order', () => {
        const a = storage.newOid()
        const b = storage.newOid()
        const t1 = commitRecords(storage, [[a, 0n, record({ value: 1 })]], meta('first', 'alice', { n: 1 }))
        const t2 = commitRecords(storage, [
          [a, t1, record({ value: 2 })],
          [b, 0n, record({ value: 3 })],
        ], meta('second'))
        const t3 = storeRevision(storage, b, t2, { value: 4 }, meta('third'))
        const all = [...storage.iterator()]
        expect(all.map((t) => t.tid)).to.deep.equal([t1, t2, t3])
        expect(all[0]!.description).to.equal('first')
        expect(all[0]!.user).to.equal('alice')
        expect(all[0]!.extension).to.deep.equal({ n: 1 })
        expect(all[1]!.records.map((r) => r.oid).sort()).to.deep.equal([a, b].sort())
        for (const r of all[1]!.records) expect(r.tid).to.equal(t2)
        expect(stateOf(all[2]!.records[0]!.data!)).to.deep.equal({ value: 4 })
        expect([...storage.iterator(t2)].map((t) => t.tid)).to.deep.equal([t2, t3])
        expect([...storage.iterator(t1, t2)].map((t) => t.tid)).to.deep.equal([t1, t2])
        expect([...storage.iterator(t3 + 1n)]).to.deep.equal([])
      })
    })

    describe('PackableStorage', () => {
      /** root (oid 0) → a; b is unreachable. Returns the serials. */
      function populate(): { a: Oid; b: Oid; root: Tid; aSerials: Tid[]; bSerial: Tid } {
        const a = storage.newOid()
        const b = storage.newOid()
        const root = commitRecords(storage, [
          [0n, 0n, record({ child: new PersistentReference(a, 'test.conformance.PlainThing') })],
          [a, 0n, record({ value: 0 })],
          [b, 0n, record({ value: 0 })],
        ])
        const aSerials = [root]
        let s = root
        for (let i = 1; i < 3; i++) aSerials.push((s = storeRevision(storage, a, s, { value: i })))
        return { a, b, root, aSerials, bSerial: root }
      }

      it('removes superseded revisions and keeps the current ones', () => {
        const { a, aSerials } = populate()
        storage.pack(storage.lastTransaction(), false)
        expect(() => storage.loadSerial(a, aSerials[0]!)).to.throw(POSKeyError)
        expect(() => storage.loadSerial(a, aSerials[1]!)).to.throw(POSKeyError)
        expect(stateOf(storage.loadBefore(a, MAX)!.data)).to.deep.equal({ value: 2 })
        expect(storage.history(a, 10).length).to.equal(1)
      })

      it('keeps what is needed to read at and after the pack time', () => {
        const { a, aSerials } = populate()
        storage.pack(aSerials[1]!, false)
        expect(() => storage.loadSerial(a, aSerials[0]!)).to.throw(POSKeyError)
        expect(stateOf(storage.loadSerial(a, aSerials[1]!))).to.deep.equal({ value: 1 })
        expect(stateOf(storage.loadBefore(a, aSerials[2]!)!.data)).to.deep.equal({ value: 1 })
      })

      it('garbage-collects objects unreachable from the root', () => {
        const { a, b } = populate()
        storage.pack(new Date(Date.now() + 60_000), true)
        expect(() => storage.loadBefore(b, MAX)).to.throw(POSKeyError)
        expect(stateOf(storage.loadBefore(a, MAX)!.data)).to.deep.equal({ value: 2 })
        expect(storage.loadBefore(0n, MAX)).to.not.equal(null)
        expect(storage.len()).to.equal(2)
        for (const t of storage.iterator()) for (const r of t.records) expect(r.oid).to.not.equal(b)
      })

      it('keeps unreachable objects without gc', () => {
        const { b } = populate()
        storage.pack(new Date(Date.now() + 60_000), false)
        expect(stateOf(storage.loadBefore(b, MAX)!.data)).to.deep.equal({ value: 0 })
      })

      it('goes on committing after a pack', () => {
        const { a } = populate()
        storage.pack(storage.lastTransaction(), true)
        const serial = storage.loadBefore(a, MAX)!.serial
        const t = storeRevision(storage, a, serial, { value: 9 })
        expect(t > serial).to.equal(true)
        expect(storage.lastTransaction()).to.equal(t)
      })
    })

    describe('ConflictResolvingStorage', () => {
      it("merges a conflicting store with the class's _p_resolveConflict", () => {
        const cls = 'test.conformance.ResolvingCounter'
        const oid = storage.newOid()
        const s0 = commitRecords(storage, [[oid, 0n, record({ value: 10 }, cls)]])
        commitRecords(storage, [[oid, s0, record({ value: 15 }, cls)]]) // +5 by someone
        const txn = meta()
        storage.tpc_begin(txn)
        storage.store(oid, s0, record({ value: 13 }, cls), txn) // +3 from the old state
        expect(storage.tpc_vote(txn)).to.deep.equal([oid])
        storage.tpc_finish(txn)
        expect(stateOf(storage.loadBefore(oid, MAX)!.data)).to.deep.equal({ value: 18 })
      })

      it('raises ConflictError naming the class when it cannot resolve', () => {
        const oid = storage.newOid()
        const s0 = storeRevision(storage, oid, 0n, { value: 1 })
        storeRevision(storage, oid, s0, { value: 2 })
        let error: unknown
        try {
          storeRevision(storage, oid, s0, { value: 3 })
        } catch (e) {
          error = e
        }
        expect(error).to.be.instanceOf(ConflictError)
        expect((error as ConflictError).className).to.equal('test.conformance.PlainThing')
        expect((error as Error).message).to.include('test.conformance.PlainThing')
      })

      it('raises ConflictError when the resolver throws', () => {
        const oid = storage.newOid()
        const cls = 'test.conformance.ResolvingCounter'
        const s0 = commitRecords(storage, [[oid, 0n, record({ value: 1 }, cls)]])
        commitRecords(storage, [[oid, s0, record({ value: 2 }, cls)]])
        expect(() => commitRecords(storage, [[oid, s0, record({ value: 'x' }, cls)]])).to.throw(ConflictError, /cannot add up/)
        expect(stateOf(storage.loadBefore(oid, MAX)!.data)).to.deep.equal({ value: 2 })
      })
    })

    describe('UndoStorage (storages whose supportsUndo() is true)', () => {
      it('undoes the newest transaction: changed objects go back, created ones go away', function () {
        if (!storage.supportsUndo() || typeof storage.undo !== 'function') return this.skip()
        const a = storage.newOid()
        const b = storage.newOid()
        const t1 = storeRevision(storage, a, 0n, { value: 1 })
        const t2 = commitRecords(storage, [
          [a, t1, record({ value: 2 })],
          [b, 0n, record({ value: 1 })],
        ])
        const heard: Oid[][] = []
        storage.addListener({ invalidate: (_tid, oids) => void heard.push([...oids]) })
        const txn = meta('undo')
        storage.tpc_begin(txn)
        expect(storage.undo(t2, txn).sort()).to.deep.equal([a, b].sort())
        storage.tpc_vote(txn)
        const t3 = storage.tpc_finish(txn)
        expect(t3 > t2).to.equal(true)
        expect(stateOf(storage.loadBefore(a, MAX)!.data)).to.deep.equal({ value: 1 })
        let gone: unknown
        try {
          gone = storage.loadBefore(b, MAX)
        } catch (error) {
          gone = error
        }
        expect(gone === null || gone instanceof POSKeyError).to.equal(true)
        expect(heard.at(-1)!.sort()).to.deep.equal([a, b].sort())
      })

      it('refuses to undo a transaction whose objects changed later, and stores nothing', function () {
        if (!storage.supportsUndo() || typeof storage.undo !== 'function') return this.skip()
        const a = storage.newOid()
        const t1 = storeRevision(storage, a, 0n, { value: 1 })
        const t2 = storeRevision(storage, a, t1, { value: 2 })
        const txn = meta('undo')
        storage.tpc_begin(txn)
        expect(() => {
          storage.undo!(t1, txn)
          storage.tpc_vote(txn)
        }).to.throw(Error)
        storage.tpc_abort(txn)
        expect(storage.lastTransaction()).to.equal(t2)
        expect(stateOf(storage.loadBefore(a, MAX)!.data)).to.deep.equal({ value: 2 })
      })

      it('refuses to undo a transaction at or before a pack time, and does not offer it in undoLog', function () {
        if (!storage.supportsUndo() || typeof storage.undo !== 'function') return this.skip()
        // The pack removed the revisions before those current at its time: undoing t2 would find
        // no revision of `a` before it and delete `a` as if t2 had created it (as it did before).
        const a = storage.newOid()
        const t1 = storeRevision(storage, a, 0n, { value: 1 })
        const t2 = storeRevision(storage, a, t1, { value: 2 })
        storage.pack(t2, false)
        const txn = meta('undo')
        storage.tpc_begin(txn)
        expect(() => {
          storage.undo!(t2, txn)
          storage.tpc_vote(txn)
        }).to.throw(UndoError, /pack/)
        storage.tpc_abort(txn)
        expect(storage.lastTransaction()).to.equal(t2)
        expect(stateOf(storage.loadBefore(a, MAX)!.data)).to.deep.equal({ value: 2 })
        if (typeof storage.undoLog === 'function') expect(storage.undoLog(5).map((e) => e.tid)).to.not.include(t2)
      })
    })

    describe('MTStorage: several connections committing at once', () => {
      it('loses no increment when interleaved transactions conflict and retry', async function () {
        this.timeout(20_000)
        const db = new DB(storage)
        const setup = new TransactionManager()
        const c0 = db.open({ transactionManager: setup })
        ;(c0.root as Record<string, unknown>).counters = new PersistentMapping([['n', 0]])
        setup.commit()
        c0.close()
        const workers = 4
        const increments = 10
        let conflicts = 0
        const tick = () => new Promise((r) => setImmediate(r))
        await Promise.all(
          Array.from({ length: workers }, async () => {
            const tm = new TransactionManager()
            const conn = db.open({ transactionManager: tm })
            for (let i = 0; i < increments; i++) {
              for (;;) {
                tm.begin()
                const counters = (conn.root as Record<string, unknown>).counters as PersistentMapping<string, number>
                const n = counters.get('n')!
                await tick() // let the others read the same value
                counters.set('n', n + 1)
                try {
                  tm.commit()
                  break
                } catch (error) {
                  if (!(error instanceof ConflictError)) throw error
                  conflicts++
                  tm.abort()
                }
              }
            }
            conn.close()
          }),
        )
        const check = db.open({ transactionManager: new TransactionManager() })
        expect(((check.root as Record<string, unknown>).counters as PersistentMapping<string, number>).get('n')).to.equal(workers * increments)
        expect(conflicts).to.be.above(0)
        check.close()
      })
    })
  })

  describe(`storage conformance: ${name}, read-only`, () => {
    it('reports read-only and refuses every write with ReadOnlyError', async () => {
      const storage = await factory({ readOnly: true })
      try {
        expect(storage.isReadOnly()).to.equal(true)
        expect(() => storage.newOid()).to.throw(ReadOnlyError)
        expect(() => storage.tpc_begin(meta())).to.throw(ReadOnlyError)
        expect(() => storage.store(1n, 0n, record({}), meta())).to.throw(ReadOnlyError)
        expect(() => storage.pack(new Date(), true)).to.throw(ReadOnlyError)
        expect(() => storage.loadBefore(0n, MAX)).to.throw(POSKeyError)
      } finally {
        storage.close()
      }
    })
  })
}

