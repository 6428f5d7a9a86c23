// Broken objects: records of classes not registered load as Broken ghosts, which cannot be
// read, changed or stored; once the class is registered they load as it.
import { expect } from 'chai'
import { Broken, MAX_TID, Persistent, UnknownClassError, registerClass } from '@wendelin/zodb'

import { newDB, session } from './helpers.js'

describe('classes registered late', () => {
  it('a Broken ghost made before its class was registered loads as that class once it is', () => {
    const db = newDB()
    const a = session(db)
    class Temporary extends Persistent {
      x = 1
    }
    registerClass('test.zodb.Temporary', Temporary)
    a.root.t = new Temporary()
    a.tm.commit()
    const oid = (a.root.t as Temporary)._p_oid!
    // The records now name a class no one registered yet.
    const rename = (data: Uint8Array) =>
      new Uint8Array(Buffer.from(Buffer.from(data).toString('latin1').replace('test.zodb.Temporary', 'test.zodb.Temporar2'), 'latin1'))
    const storage = db.storage
    const rec = storage.loadBefore(oid, MAX_TID)!
    const rootRev = storage.loadBefore(0n, MAX_TID)!
    const txn = { user: '', description: '', extension: {} }
    storage.tpc_begin(txn)
    storage.store(oid, rec.serial, rename(rec.data), txn)
    storage.store(0n, rootRev.serial, rename(rootRev.data), txn)
    storage.tpc_vote(txn)
    storage.tpc_finish(txn)
    const b = session(db)
    const t = b.root.t as Persistent
    expect(t).to.be.instanceOf(Broken)
    expect(() => (t as unknown as { x: number }).x).to.throw(UnknownClassError, /test\.zodb\.Temporar2/)
    // The module that defines the class is imported now (a dynamic import).
    class Temporar2 extends Persistent {
      x = 0
      double() {
        return this.x * 2
      }
    }
    registerClass('test.zodb.Temporar2', Temporar2)
    b.tm.abort()
    const again = b.root.t as Temporar2
    expect(again).to.equal(t) // the same object: the root still holds it
    expect(again.x).to.equal(1)
    expect(again).to.be.instanceOf(Temporar2)
    expect(again.double()).to.equal(2)
    again.x = 5
    b.tm.commit()
    const c = session(db)
    expect((c.root.t as Temporar2).x).to.equal(5)
  })

  it('a placeholder Broken class registered under the name keeps it broken', () => {
    const db = newDB()
    const a = session(db)
    class Gone extends Broken {
      static override brokenClassName = 'test.zodb.Gone'
    }
    registerClass('test.zodb.Gone', Gone)
    a.root.g = new Gone()
    a.tm.commit()
    const b = session(db)
    expect(() => (b.root.g as unknown as { x: unknown }).x).to.throw(UnknownClassError, /test\.zodb\.Gone/)
    expect(() => (b.root.g as unknown as { x: unknown }).x).to.throw(UnknownClassError, /test\.zodb\.Gone/)
  })
})
