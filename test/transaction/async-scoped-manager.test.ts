// The async-scoped manager: concurrent async tasks each have their own current transaction.
import { expect } from 'chai'
import * as transaction from '@wendelin/transaction'
import { AsyncScopedTransactionManager, NoTransactionError, type Transaction } from '@wendelin/transaction'

import { RecordingDataManager, RecordingSynchronizer, SampleStore } from './fixtures.js'

const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms))

describe('AsyncScopedTransactionManager', () => {
  it('outside any scope uses one root manager', () => {
    const tm = new AsyncScopedTransactionManager()
    expect(tm.inScope).to.equal(false)
    const txn = tm.get()
    expect(tm.get()).to.equal(txn)
    expect(tm.current).to.equal(tm.current)
    tm.abort()
  })

  it('gives every scope its own current transaction, across awaits of interleaved tasks', async () => {
    const tm = new AsyncScopedTransactionManager()
    const store = new SampleStore(() => tm.get())
    const order: string[] = []
    const seen = new Map<string, Transaction[]>()

    async function task(name: string, delays: number[]) {
      return tm.scope(async () => {
        expect(tm.inScope).to.equal(true)
        const txn = tm.begin()
        txn.note(name)
        const mine: Transaction[] = []
        for (const d of delays) {
          await tick(d)
          order.push(name)
          mine.push(tm.get())
        }
        seen.set(name, mine)
        return txn
      })
    }

    const [a, b, c] = await Promise.all([task('a', [3, 0, 2]), task('b', [0, 3, 0]), task('c', [1, 1, 1])])
    expect(new Set(order).size).to.equal(3)
    expect(order.slice(0, 3)).to.not.deep.equal(['a', 'a', 'a'], 'the tasks did interleave')
    expect(new Set([a, b, c]).size).to.equal(3)
    for (const [name, txn] of [['a', a], ['b', b], ['c', c]] as const) {
      expect(seen.get(name)!.every((t) => t === txn)).to.equal(true, `task ${name} always saw its own transaction`)
      expect(txn.description).to.equal(name)
    }
    expect(store.keys()).to.deep.equal([])
  })

  it('commits and aborts only the scope’s own work', async () => {
    const tm = new AsyncScopedTransactionManager()
    const journal: string[] = []
    await Promise.all([
      tm.scope(async () => {
        tm.get().join(new RecordingDataManager('keep', journal))
        await tick(2)
        tm.commit()
      }),
      tm.scope(async () => {
        tm.get().join(new RecordingDataManager('drop', journal))
        await tick(1)
        tm.abort()
      }),
    ])
    expect(journal.filter((e) => e.startsWith('keep.'))).to.deep.equal(['keep.tpc_begin', 'keep.commit', 'keep.tpc_vote', 'keep.tpc_finish'])
    expect(journal.filter((e) => e.startsWith('drop.'))).to.deep.equal(['drop.abort'])
  })

  it('keeps synchronizers per scope', async () => {
    const tm = new AsyncScopedTransactionManager()
    const inScope = new RecordingSynchronizer([], 'inside')
    const outside = new RecordingSynchronizer([], 'outside')
    tm.registerSynch(outside)
    await tm.scope(async () => {
      tm.registerSynch(inScope)
      await tick()
      tm.begin()
      tm.commit()
      expect(tm.registeredSynchs()).to.equal(true)
    })
    expect(inScope.names()).to.deep.equal(['newTransaction', 'beforeCompletion', 'afterCompletion'])
    expect(outside.names()).to.deep.equal([])
    tm.clearSynchs()
  })

  it('nested scopes are independent of their parent', () => {
    const tm = new AsyncScopedTransactionManager()
    tm.scope(() => {
      const outer = tm.begin()
      tm.scope(() => {
        const inner = tm.get()
        expect(inner).to.not.equal(outer)
        tm.commit()
      })
      expect(tm.get()).to.equal(outer)
      tm.abort()
    })
  })

  it('a scope can be explicit', () => {
    const tm = new AsyncScopedTransactionManager()
    tm.scope(
      () => {
        expect(tm.explicit).to.equal(true)
        expect(() => tm.get()).to.throw(NoTransactionError)
      },
      { explicit: true },
    )
    expect(tm.explicit).to.equal(false)
  })

  it('retries within the scope with runAsync', async () => {
    const tm = new AsyncScopedTransactionManager()
    let calls = 0
    const result = await tm.scope(() =>
      tm.runAsync(async () => {
        calls++
        await tick()
        if (calls === 1) throw new transaction.TransientError('once more')
        return calls
      }),
    )
    expect(result).to.equal(2)
  })

  it('backs the module-level functions (the default manager)', () => {
    expect(transaction.manager).to.be.instanceOf(AsyncScopedTransactionManager)
    const txn = transaction.begin()
    expect(transaction.get()).to.equal(txn)
    transaction.doom()
    expect(transaction.isDoomed()).to.equal(true)
    transaction.abort()
    const t2 = transaction.get()
    const sp = transaction.savepoint()
    expect(sp.valid).to.equal(true)
    transaction.commit()
    expect(t2.status).to.equal(transaction.Status.COMMITTED)
  })
})
