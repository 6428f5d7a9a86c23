// Error messages of a commit name the attribute path of the value that cannot be stored, and the
// object whose record it is: the encoder reuses one root path and one reference label from record
// to record, so each message must name its own record, not the previous one.
import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import { InvalidObjectReference, Persistent, UnserializableError } from '@wendelin/zodb'

import { Item, newDB } from './helpers.js'

class Unregistered extends Persistent {
  n = 1
}

describe('paths in the errors of a commit', () => {
  it('name the reference to an object of another connection, inside the record of the second object stored', () => {
    const db = newDB()
    const tm = new TransactionManager()
    const a = db.open({ transactionManager: tm })
    const b = db.open({ transactionManager: tm })
    a.root.item = new Item('a')
    tm.commit()
    b.sync()
    const first = new Item('first')
    const second = new Item('second')
    b.root.first = first
    b.root.second = second
    second.value = { deep: [0, a.root.item] }
    expect(() => tm.commit()).to.throw(InvalidObjectReference, /^cannot store test\.Item\(oid 0x[0-9a-f]{16}\)\.value\.deep\[1\]: it refers to Item\(oid 0x[0-9a-f]{16}\), which belongs to another connection$/)
    tm.abort()
    // The next commit's message names its own object and path.
    b.root.alias = a.root.item
    expect(() => tm.commit()).to.throw(InvalidObjectReference, /^cannot store zodb\.Root\(oid 0x0{16}\)\.alias: it refers to/)
    tm.abort()
  })

  it('name a referenced object of an unregistered class', () => {
    const db = newDB()
    const tm = new TransactionManager()
    const conn = db.open({ transactionManager: tm })
    conn.root.list = [new Item('x'), new Unregistered()]
    expect(() => tm.commit()).to.throw(UnserializableError, /zodb\.Root\(oid 0x0{16}\)\.list\[1\].*class Unregistered is not registered/)
    tm.abort()
  })
})
