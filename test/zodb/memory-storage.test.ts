// MemoryStorage passes the whole storage conformance suite, and says clearly that another
// thread cannot open it.
import { expect } from 'chai'
import { DB, MemoryStorage, StorageNotShareableError, openStorage, specForAnotherThread } from '@wendelin/zodb'

import { describeStorageConformance } from './storage-conformance.js'

describeStorageConformance('MemoryStorage', (options = {}) => new MemoryStorage(options))

describe('MemoryStorage', () => {
  it('is opened by the memory: spec, each time a new empty one', async () => {
    const a = await openStorage('memory:')
    const b = await openStorage('memory:named')
    expect(a).to.be.instanceOf(MemoryStorage)
    expect(b.getName()).to.equal('named')
    expect(b.spec).to.equal('memory:named')
    expect(a.len()).to.equal(0)
  })

  it('cannot be reopened from another thread, and says so', () => {
    const s = new MemoryStorage({ name: 'scratch' })
    expect(s.shareable).to.equal(false)
    expect(() => specForAnotherThread(s)).to.throw(StorageNotShareableError, /scratch.*another thread.*sqlite:/s)
  })

  it('refuses unknown spec schemes with a clear error', async () => {
    let error: unknown
    try {
      await openStorage('nosuch:/x')
    } catch (e) {
      error = e
    }
    expect(String(error)).to.match(/no storage is registered for nosuch/)
  })

  it('opens a read-only DB over a spec', async () => {
    const db = await DB.open('memory:', { readOnly: true })
    expect(db.storage.isReadOnly()).to.equal(true)
    db.close()
  })
})
