// TransactionManager: implicit and explicit modes, synchronizer registration, retries.
import { expect } from 'chai'
import {
  AlreadyInTransactionError,
  NoTransactionError,
  Status,
  TransactionManager,
  TransactionStateError,
  TransientError,
  type Transaction,
} from '@wendelin/transaction'

import { CapturingLogger, RecordingDataManager, RecordingSynchronizer, SampleStore } from './fixtures.js'

class ConflictLike extends TransientError {
  override name = 'ConflictLike'
}

describe('TransactionManager', () => {
  describe('implicit mode (the default)', () => {
    it('get() makes a transaction on first use and returns it until it ends', () => {
      const tm = new TransactionManager()
      expect(tm.explicit).to.equal(false)
      expect(tm.peek()).to.equal(null)
      const txn = tm.get()
      expect(tm.get()).to.equal(txn)
      expect(tm.peek()).to.equal(txn)
      tm.commit()
      expect(tm.peek()).to.equal(null)
      expect(tm.get()).to.not.equal(txn)
    })

    it('begin() aborts the current transaction and starts a new one', () => {
      const tm = new TransactionManager()
      const journal: string[] = []
      const first = tm.begin()
      first.join(new RecordingDataManager('a', journal))
      const second = tm.begin()
      expect(second).to.not.equal(first)
      expect(journal).to.deep.equal(['a.abort'])
      expect(tm.get()).to.equal(second)
    })

    it('commit() and abort() with no transaction start and end an empty one', () => {
      const tm = new TransactionManager()
      tm.commit()
      tm.abort()
      expect(tm.peek()).to.equal(null)
    })

    it('doom() and isDoomed() act on the current transaction', () => {
      const tm = new TransactionManager()
      expect(tm.isDoomed()).to.equal(false)
      tm.doom()
      expect(tm.isDoomed()).to.equal(true)
      expect(tm.get().status).to.equal(Status.DOOMED)
      tm.abort()
      expect(tm.isDoomed()).to.equal(false)
    })

    it('refuses to free a transaction that is not its current one', () => {
      const tm = new TransactionManager()
      const other = new TransactionManager().get()
      expect(() => tm.free(other)).to.throw(TransactionStateError, /not the current one/)
    })
  })

  describe('explicit mode', () => {
    it('get(), commit(), abort() with no transaction are errors', () => {
      const tm = new TransactionManager({ explicit: true })
      expect(tm.explicit).to.equal(true)
      expect(() => tm.get()).to.throw(NoTransactionError, /begin\(\)/)
      expect(() => tm.commit()).to.throw(NoTransactionError)
      expect(() => tm.abort()).to.throw(NoTransactionError)
      expect(() => tm.savepoint()).to.throw(NoTransactionError)
    })

    it('begin() while a transaction is active is an error that leaves it alone', () => {
      const tm = new TransactionManager({ explicit: true })
      const journal: string[] = []
      const txn = tm.begin()
      txn.join(new RecordingDataManager('a', journal))
      expect(() => tm.begin()).to.throw(AlreadyInTransactionError)
      expect(journal).to.deep.equal([])
      expect(tm.get()).to.equal(txn)
      tm.commit()
      expect(() => tm.get()).to.throw(NoTransactionError)
      expect(tm.begin()).to.not.equal(txn)
    })
  })

  describe('synchronizers', () => {
    it('hear newTransaction on begin(), with the new transaction already current', () => {
      const tm = new TransactionManager()
      const synch = new RecordingSynchronizer()
      let current: Transaction | null = null
      synch.newTransaction = (t) => {
        synch.calls.push(['newTransaction', t])
        current = tm.peek()
      }
      tm.registerSynch(synch)
      const txn = tm.begin()
      expect(synch.names()).to.deep.equal(['newTransaction'])
      expect(current).to.equal(txn)
    })

    it('implicit get() does not call newTransaction (only begin() does)', () => {
      const tm = new TransactionManager()
      const synch = new RecordingSynchronizer()
      tm.registerSynch(synch)
      tm.get()
      expect(synch.names()).to.deep.equal([])
    })

    it('a synchronizer registered while a transaction is current hears of it at once', () => {
      const tm = new TransactionManager()
      const txn = tm.get()
      const synch = new RecordingSynchronizer()
      tm.registerSynch(synch)
      expect(synch.calls).to.deep.equal([['newTransaction', txn]])
    })

    it('a synchronizer registered after a transaction started still hears of its completion', () => {
      const tm = new TransactionManager()
      const txn = tm.begin()
      const synch = new RecordingSynchronizer()
      tm.registerSynch(synch)
      txn.commit()
      expect(synch.names()).to.deep.equal(['newTransaction', 'beforeCompletion', 'afterCompletion'])
    })

    it('can be unregistered and cleared; registeredSynchs() tells whether any are left', () => {
      const tm = new TransactionManager()
      const a = new RecordingSynchronizer()
      const b = new RecordingSynchronizer()
      expect(tm.registeredSynchs()).to.equal(false)
      tm.registerSynch(a)
      tm.registerSynch(a)
      tm.registerSynch(b)
      expect(tm.registeredSynchs()).to.equal(true)
      tm.unregisterSynch(a)
      tm.begin()
      expect(a.calls).to.deep.equal([])
      expect(b.names()).to.deep.equal(['newTransaction'])
      tm.clearSynchs()
      expect(tm.registeredSynchs()).to.equal(false)
      tm.commit()
      expect(b.names()).to.deep.equal(['newTransaction'])
    })

    it('are held weakly: a dropped synchronizer is collected and no longer called', async function () {
      const gc = (globalThis as { gc?: () => void }).gc
      if (gc === undefined) throw new Error('run mocha with --expose-gc (see .mocharc.json)')
      const tm = new TransactionManager()
      let collected = false
      const registry = new FinalizationRegistry(() => {
        collected = true
      })
      ;(() => {
        const synch = new RecordingSynchronizer()
        registry.register(synch, 'synch')
        tm.registerSynch(synch)
      })()
      for (let i = 0; i < 50 && (!collected || tm.registeredSynchs()); i++) {
        await new Promise((resolve) => setImmediate(resolve))
        gc()
      }
      expect(collected).to.equal(true, 'the synchronizer was collected although registered')
      expect(tm.registeredSynchs()).to.equal(false)
    })
  })

  describe('run()', () => {
    it('runs the function in a new transaction, commits, returns its result and notes its name', () => {
      const tm = new TransactionManager()
      const store = new SampleStore(() => tm.get())
      let seen: Transaction | null = null
      const result = tm.run(function addOne(txn) {
        seen = txn
        store.set('k', 1)
        return 'done'
      })
      expect(result).to.equal('done')
      expect(store.committed.get('k')).to.equal(1)
      expect(seen!.status).to.equal(Status.COMMITTED)
      expect(seen!.description).to.equal('addOne')
    })

    it('aborts a transaction that was already current before starting', () => {
      const tm = new TransactionManager()
      const journal: string[] = []
      tm.get().join(new RecordingDataManager('stale', journal))
      tm.run(() => {})
      expect(journal).to.deep.equal(['stale.abort'])
    })

    it('retries on a TransientError, then succeeds', () => {
      const tm = new TransactionManager()
      const store = new SampleStore(() => tm.get())
      let calls = 0
      const result = tm.run(
        () => {
          calls++
          store.set('attempt', calls)
          if (calls < 3) throw new ConflictLike(`conflict ${calls}`)
          return calls
        },
        { tries: 3, note: 'bump' },
      )
      expect(result).to.equal(3)
      expect(store.committed.get('attempt')).to.equal(3)
    })

    it('gives up after `tries` attempts and throws the last error', () => {
      const tm = new TransactionManager()
      let calls = 0
      expect(() =>
        tm.run(
          () => {
            calls++
            throw new ConflictLike(`conflict ${calls}`)
          },
          { tries: 2 },
        ),
      ).to.throw(ConflictLike, 'conflict 2')
      expect(calls).to.equal(2)
      expect(tm.peek()).to.equal(null, 'the failed attempt was aborted')
    })

    it('does not retry other errors, and aborts', () => {
      const tm = new TransactionManager()
      const journal: string[] = []
      let calls = 0
      expect(() =>
        tm.run(() => {
          calls++
          tm.get().join(new RecordingDataManager('a', journal))
          throw new TypeError('a bug')
        }),
      ).to.throw(TypeError, 'a bug')
      expect(calls).to.equal(1)
      expect(journal).to.deep.equal(['a.abort'])
    })

    it('retries when a joined data manager says the error is worth retrying (asked before the abort)', () => {
      const tm = new TransactionManager()
      let calls = 0
      const result = tm.run(() => {
        calls++
        const dm = Object.assign(new RecordingDataManager('db'), {
          shouldRetry: (e: unknown) => e instanceof Error && e.message === 'database is locked',
        })
        tm.get().join(dm)
        if (calls === 1) throw new Error('database is locked')
        return 'ok'
      })
      expect(result).to.equal('ok')
      expect(calls).to.equal(2)
    })

    it('retries a conflict raised by the commit itself', () => {
      const tm = new TransactionManager()
      let calls = 0
      tm.run(() => {
        calls++
        const dm = new RecordingDataManager('db')
        if (calls === 1) {
          dm.tpc_vote = () => {
            throw new ConflictLike('write conflict at vote')
          }
        }
        tm.get().join(dm)
      })
      expect(calls).to.equal(2)
    })

    it('rejects tries that are not a positive integer', () => {
      const tm = new TransactionManager()
      expect(() => tm.run(() => 1, { tries: 0 })).to.throw(RangeError, /tries/)
      expect(() => tm.run(() => 1, { tries: 1.5 })).to.throw(RangeError, /tries/)
    })

    it('refuses an async function (it would commit before the work is done)', () => {
      const tm = new TransactionManager()
      expect(() => tm.run(async () => 1)).to.throw(TypeError, /runAsync/)
      expect(tm.peek()).to.equal(null)
    })
  })

  describe('runAsync()', () => {
    it('awaits the work before committing, and retries transient errors', async () => {
      const tm = new TransactionManager()
      const store = new SampleStore(() => tm.get())
      let calls = 0
      const result = await tm.runAsync(async () => {
        calls++
        await new Promise((resolve) => setTimeout(resolve, 1))
        store.set('k', calls)
        if (calls === 1) throw new ConflictLike('try again')
        return 'async done'
      })
      expect(result).to.equal('async done')
      expect(store.committed.get('k')).to.equal(2)
    })

    it('rejects with a non-retryable error after aborting', async () => {
      const tm = new TransactionManager()
      const journal: string[] = []
      let error: unknown
      try {
        await tm.runAsync(async () => {
          tm.get().join(new RecordingDataManager('a', journal))
          throw new Error('nope')
        })
      } catch (e) {
        error = e
      }
      expect((error as Error).message).to.equal('nope')
      expect(journal).to.deep.equal(['a.abort'])
    })
  })

  describe('attempts()', () => {
    it('stops after the first successful attempt', () => {
      const tm = new TransactionManager()
      const store = new SampleStore(() => tm.get())
      let n = 0
      for (const attempt of tm.attempts(5)) {
        n++
        expect(attempt.run(() => store.set('x', attempt.number))).to.equal(true)
      }
      expect(n).to.equal(1)
      expect(store.committed.get('x')).to.equal(1)
    })

    it('goes on to the next attempt after a retryable failure', () => {
      const tm = new TransactionManager()
      const store = new SampleStore(() => tm.get())
      const outcomes: boolean[] = []
      for (const attempt of tm.attempts(3)) {
        outcomes.push(
          attempt.run(() => {
            store.set('x', attempt.number)
            if (attempt.number < 3) throw new ConflictLike('conflict')
          }),
        )
      }
      expect(outcomes).to.deep.equal([false, false, true])
      expect(store.committed.get('x')).to.equal(3)
    })

    it('throws the failure of the last attempt', () => {
      const tm = new TransactionManager()
      const attempts: number[] = []
      expect(() => {
        for (const attempt of tm.attempts(2)) {
          attempts.push(attempt.number)
          attempt.run(() => {
            throw new ConflictLike(`conflict ${attempt.number}`)
          })
        }
      }).to.throw(ConflictLike, 'conflict 2')
      expect(attempts).to.deep.equal([1, 2])
      expect(tm.peek()).to.equal(null)
    })

    it('throws at once an error that is not retryable', () => {
      const tm = new TransactionManager()
      let n = 0
      expect(() => {
        for (const attempt of tm.attempts(3)) {
          n++
          attempt.run(() => {
            throw new Error('bug')
          })
        }
      }).to.throw('bug')
      expect(n).to.equal(1)
    })

    it('supports async work', async () => {
      const tm = new TransactionManager()
      let n = 0
      for (const attempt of tm.attempts(3)) {
        await attempt.runAsync(async () => {
          n++
          await Promise.resolve()
          if (n === 1) throw new ConflictLike('again')
        })
      }
      expect(n).to.equal(2)
    })

    it('an attempt runs once, and an unused attempt is an error', () => {
      const tm = new TransactionManager()
      expect(() => {
        for (const attempt of tm.attempts(2)) {
          attempt.run(() => {
            throw new ConflictLike('x')
          })
          attempt.run(() => {})
        }
      }).to.throw(TransactionStateError, /already run/)
      expect(() => {
        for (const _ of tm.attempts(2)) {
          // forgot attempt.run()
        }
      }).to.throw(TransactionStateError, /must be used/)
    })

    it('rejects a count that is not a positive integer', () => {
      const tm = new TransactionManager()
      expect(() => [...tm.attempts(0)]).to.throw(RangeError)
    })
  })
})
