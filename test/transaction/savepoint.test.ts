// Savepoints: rolling data managers back to an earlier state inside one transaction.
import { expect } from 'chai'
import {
  InvalidSavepointRollbackError,
  SavepointsUnsupportedError,
  Status,
  TransactionFailedError,
  TransactionManager,
} from '@wendelin/transaction'

import { CapturingLogger, RecordingDataManager, SampleStore, SavepointRecordingDataManager, thrown } from './fixtures.js'

function setup() {
  const tm = new TransactionManager({ logger: new CapturingLogger() })
  const store = new SampleStore(() => tm.get())
  return { tm, store }
}

describe('Savepoints', () => {
  it('roll a data manager back to its state at the savepoint, and the rest commits', () => {
    const { tm, store } = setup()
    store.set('a', 1)
    const sp = tm.savepoint()
    store.set('a', 2)
    store.set('b', 3)
    sp.rollback()
    expect(store.keys()).to.deep.equal(['a'])
    expect(store.get('a')).to.equal(1)
    tm.commit()
    expect([...store.committed]).to.deep.equal([['a', 1]])
  })

  it('can be rolled back more than once', () => {
    const { tm, store } = setup()
    store.set('a', 1)
    const sp = tm.savepoint()
    store.set('a', 2)
    sp.rollback()
    store.set('a', 3)
    sp.rollback()
    expect(store.get('a')).to.equal(1)
    expect(sp.valid).to.equal(true)
  })

  it('rolling back to an earlier savepoint invalidates the later ones, not the earlier ones', () => {
    const { tm, store } = setup()
    store.set('x', 0)
    const sp0 = tm.savepoint()
    store.set('x', 1)
    const sp1 = tm.savepoint()
    store.set('x', 2)
    const sp2 = tm.savepoint()
    store.set('x', 3)
    sp1.rollback()
    expect(store.get('x')).to.equal(1)
    expect(sp2.valid).to.equal(false)
    expect(() => sp2.rollback()).to.throw(InvalidSavepointRollbackError, /invalidated/)
    expect(sp1.valid).to.equal(true)
    expect(sp0.valid).to.equal(true)
    sp0.rollback()
    expect(store.get('x')).to.equal(0)
    expect(sp1.valid).to.equal(false)
  })

  it('are all invalidated when the transaction commits or aborts', () => {
    const { tm, store } = setup()
    store.set('a', 1)
    const sp = tm.savepoint()
    tm.commit()
    expect(sp.valid).to.equal(false)
    expect(() => sp.rollback()).to.throw(InvalidSavepointRollbackError)

    store.set('a', 2)
    const sp2 = tm.savepoint()
    tm.abort()
    expect(sp2.valid).to.equal(false)
    expect(store.committed.get('a')).to.equal(1)
  })

  it('a data manager that joined after the savepoint is aborted and unjoined on rollback', () => {
    const { tm, store } = setup()
    const journal: string[] = []
    store.set('a', 1)
    const sp = tm.savepoint()
    const late = new RecordingDataManager('late', journal)
    tm.get().join(late)
    sp.rollback()
    expect(journal).to.deep.equal(['late.abort'])
    expect(tm.get().resources).to.not.include(late)
    tm.commit()
    expect(journal).to.deep.equal(['late.abort'], 'the unjoined manager takes no part in the commit')
  })

  it('a manager that joined later is rolled back by each earlier savepoint', () => {
    const { tm } = setup()
    const journal: string[] = []
    const sp1 = tm.savepoint()
    const sp2 = tm.savepoint()
    tm.get().join(new RecordingDataManager('late', journal))
    sp2.rollback()
    expect(journal).to.deep.equal(['late.abort'])
    sp1.rollback()
    expect(journal).to.deep.equal(['late.abort', 'late.abort'])
  })

  it('asks every joined manager for a savepoint, and rolls each back', () => {
    const { tm } = setup()
    const journal: string[] = []
    tm.get().join(new SavepointRecordingDataManager('a', journal))
    tm.get().join(new SavepointRecordingDataManager('b', journal))
    const sp = tm.savepoint()
    sp.rollback()
    expect(journal).to.deep.equal(['a.savepoint', 'b.savepoint', 'a.rollback', 'b.rollback'])
  })

  describe('with a data manager that cannot make savepoints', () => {
    it('a savepoint is an error, naming the manager, and hoses the transaction after cleaning up', () => {
      const { tm } = setup()
      const journal: string[] = []
      const txn = tm.get()
      txn.join(new SavepointRecordingDataManager('ok', journal))
      txn.join(new RecordingDataManager('plain', journal))
      const error = thrown(() => tm.savepoint())
      expect(error).to.be.instanceOf(SavepointsUnsupportedError)
      expect((error as Error).message).to.match(/RecordingDataManager\(plain\)/)
      expect(journal).to.deep.equal(['ok.savepoint', 'ok.abort', 'plain.abort', 'ok.tpc_abort', 'plain.tpc_abort'])
      expect(txn.status).to.equal(Status.COMMITFAILED)
      expect(() => tm.commit()).to.throw(TransactionFailedError)
      expect(() => tm.savepoint()).to.throw(TransactionFailedError)
    })

    it('an optimistic savepoint is allowed, but rolling it back is an error that hoses the transaction', () => {
      const { tm } = setup()
      const txn = tm.get()
      txn.join(new RecordingDataManager('plain'))
      const sp = tm.savepoint(true)
      expect(sp.valid).to.equal(true)
      expect(() => sp.rollback()).to.throw(SavepointsUnsupportedError)
      expect(txn.status).to.equal(Status.COMMITFAILED)
      expect(() => tm.commit()).to.throw(TransactionFailedError)
    })
  })

  it('a failure while saving hoses the transaction', () => {
    const { tm } = setup()
    const txn = tm.get()
    txn.join(new SavepointRecordingDataManager('a', [], 'savepoint'))
    expect(() => tm.savepoint()).to.throw('a failed in savepoint')
    expect(() => tm.commit()).to.throw(TransactionFailedError, /a failed in savepoint/)
  })

  it('a failure while rolling back hoses the transaction', () => {
    const { tm } = setup()
    const txn = tm.get()
    txn.join(new SavepointRecordingDataManager('a', [], 'rollback'))
    const sp = tm.savepoint()
    expect(() => sp.rollback()).to.throw('a failed in rollback')
    const error = thrown(() => tm.commit())
    expect(error).to.be.instanceOf(TransactionFailedError)
    expect(((error as TransactionFailedError).cause as Error).message).to.equal('a failed in rollback')
    tm.abort()
    expect(tm.get().status).to.equal(Status.ACTIVE, 'abort clears the hosed state')
  })

  it('are not kept alive by their transaction: a dropped savepoint, and the state it saved, can be collected', async () => {
    // A bulk import makes a savepoint every so often and drops it: each holds every manager's
    // saved state (a connection's copy of its savepoint records), so keeping them all until the
    // transaction ends makes memory grow with the square of the work (Python holds them weakly).
    const gc = (globalThis as { gc?: () => void }).gc
    if (gc === undefined) throw new Error('run mocha with --expose-gc (see .mocharc.json)')
    const { tm, store } = setup()
    store.set('a', 1)
    let collected = 0
    const registry = new FinalizationRegistry(() => collected++)
    ;(() => {
      for (let i = 0; i < 5; i++) registry.register(tm.savepoint(), i)
    })()
    const kept = tm.savepoint()
    for (let i = 0; i < 50 && collected < 5; i++) {
      await new Promise((resolve) => setImmediate(resolve))
      gc()
    }
    expect(collected).to.equal(5, 'savepoints nobody refers to were kept')
    store.set('a', 2)
    kept.rollback()
    expect(store.get('a')).to.equal(1)
    tm.abort()
    expect(kept.valid).to.equal(false)
  })

  it('a savepoint with no data managers is valid and rolls back to nothing', () => {
    const { tm } = setup()
    const sp = tm.savepoint()
    sp.rollback()
    expect(sp.valid).to.equal(true)
  })
})
