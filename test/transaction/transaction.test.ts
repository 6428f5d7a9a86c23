// Behaviours of a single Transaction: status, joining, two-phase commit and its failure phases,
// the hosed state, doom, hooks, synchronizers, metadata and per-manager data.
import { expect } from 'chai'
import {
  DoomedTransactionError,
  Status,
  Transaction,
  TransactionFailedError,
  TransactionManager,
  TransactionStateError,
  TransientError,
} from '@wendelin/transaction'

import { CapturingLogger, RecordingDataManager, RecordingSynchronizer, thrown, type Phase } from './fixtures.js'

function setup() {
  const logger = new CapturingLogger()
  const tm = new TransactionManager({ logger })
  const journal: string[] = []
  return { logger, tm, journal, txn: tm.begin() }
}

describe('Transaction', () => {
  describe('status and metadata', () => {
    it('starts active with empty metadata', () => {
      const { txn } = setup()
      expect(txn.status).to.equal(Status.ACTIVE)
      expect(txn.user).to.equal('')
      expect(txn.description).to.equal('')
      expect(txn.extension).to.deep.equal({})
      expect(txn.resources).to.deep.equal([])
      expect(txn.isDoomed()).to.equal(false)
    })

    it('note() trims and appends lines to the description', () => {
      const { txn } = setup()
      txn.note('  first  ')
      txn.note('')
      txn.note('second\n')
      expect(txn.description).to.equal('first\nsecond')
    })

    it('setUser() stores "<path> <name>", with "/" as the default path', () => {
      const { txn } = setup()
      txn.setUser('alice')
      expect(txn.user).to.equal('/ alice')
      txn.setUser('bob', '/bedrock')
      expect(txn.user).to.equal('/bedrock bob')
    })

    it('rejects a user or description that is not a string', () => {
      const { txn } = setup()
      expect(() => {
        ;(txn as { user: unknown }).user = null
      }).to.throw(TypeError, /user must be a string/)
      expect(() => {
        ;(txn as { description: unknown }).description = 42
      }).to.throw(TypeError, /description must be a string/)
    })

    it('setExtendedInfo() fills the extension', () => {
      const { txn } = setup()
      txn.setExtendedInfo('a', 1)
      txn.setExtendedInfo('b', { c: 2 })
      txn.setExtendedInfo('a', 3)
      expect(txn.extension).to.deep.equal({ a: 3, b: { c: 2 } })
    })

    it('keeps data per key until the transaction ends', () => {
      const { tm, txn } = setup()
      const dm1 = {}
      const dm2 = {}
      expect(txn.data(dm1)).to.equal(undefined)
      txn.setData(dm1, 'one')
      txn.setData(dm2, { two: 2 })
      expect(txn.data(dm1)).to.equal('one')
      expect(txn.data<{ two: number }>(dm2)?.two).to.equal(2)
      tm.commit()
      expect(txn.data(dm1)).to.equal(undefined)
    })
  })

  describe('doom', () => {
    it('dooms an active transaction, and dooming twice is harmless', () => {
      const { txn } = setup()
      txn.doom()
      expect(txn.isDoomed()).to.equal(true)
      expect(txn.status).to.equal(Status.DOOMED)
      txn.doom()
      expect(txn.isDoomed()).to.equal(true)
    })

    it('a doomed transaction can be joined but not committed; abort ends it', () => {
      const { txn, tm, journal } = setup()
      txn.doom()
      const dm = new RecordingDataManager('a', journal)
      txn.join(dm)
      expect(() => txn.commit()).to.throw(DoomedTransactionError, /doomed/)
      expect(journal).to.deep.equal([])
      txn.abort()
      expect(journal).to.deep.equal(['a.abort'])
      expect(tm.peek()).to.equal(null)
    })

    it('a transaction doomed by a before-commit hook or a synchronizer is not committed', () => {
      for (const doomIn of ['hook', 'beforeCompletion'] as const) {
        const { txn, tm, journal } = setup()
        txn.join(new RecordingDataManager('a', journal))
        if (doomIn === 'hook') txn.addBeforeCommitHook(() => txn.doom())
        const synch = { beforeCompletion: (t: Transaction) => void (doomIn === 'beforeCompletion' && t.doom()) }
        tm.registerSynch(synch)
        expect(() => tm.commit(), doomIn).to.throw(DoomedTransactionError, /doomed/)
        expect(journal, doomIn).to.deep.equal([])
        expect(txn.status, doomIn).to.equal(Status.DOOMED)
        tm.abort()
        expect(journal, doomIn).to.deep.equal(['a.abort'])
      }
    })

    it('cannot doom a transaction that is committing or committed', () => {
      const { txn, tm } = setup()
      const dm = new RecordingDataManager('a')
      let inside: unknown
      dm.commit = (t) => {
        inside = thrown(() => t.doom())
      }
      txn.join(dm)
      tm.commit()
      expect(inside).to.be.instanceOf(TransactionStateError)
      expect(() => txn.doom()).to.throw(TransactionStateError, /Committed/)
    })
  })

  describe('join', () => {
    it('refuses to join a committing transaction', () => {
      const { txn, tm } = setup()
      const dm = new RecordingDataManager('a')
      let inside: unknown
      dm.tpc_vote = (t) => {
        inside = thrown(() => t.join(new RecordingDataManager('late')))
      }
      txn.join(dm)
      tm.commit()
      expect(inside).to.be.instanceOf(TransactionStateError)
      expect((inside as Error).message).to.match(/cannot join RecordingDataManager\(late\).*Committing/)
    })

    it('refuses to join a committed transaction', () => {
      const { txn, tm } = setup()
      tm.commit()
      expect(() => txn.join(new RecordingDataManager('a'))).to.throw(TransactionStateError, /Committed/)
    })
  })

  describe('commit', () => {
    it('runs the four phases on every manager, phase by phase, in sortKey order', () => {
      const { txn, tm, journal } = setup()
      for (const key of ['c', 'a', 'b']) txn.join(new RecordingDataManager(key, journal))
      tm.commit()
      expect(journal).to.deep.equal([
        'a.tpc_begin', 'b.tpc_begin', 'c.tpc_begin',
        'a.commit', 'b.commit', 'c.commit',
        'a.tpc_vote', 'b.tpc_vote', 'c.tpc_vote',
        'a.tpc_finish', 'b.tpc_finish', 'c.tpc_finish',
      ])
      expect(txn.status).to.equal(Status.COMMITTED)
      expect(txn.resources).to.deep.equal([])
      expect(tm.peek()).to.equal(null, 'the manager forgot the committed transaction')
    })

    it('keeps join order among managers with equal sort keys', () => {
      const { txn, tm, journal } = setup()
      const first = new RecordingDataManager('same', journal)
      const second = new RecordingDataManager('same', [])
      txn.join(first)
      txn.join(second)
      const order: RecordingDataManager[] = []
      first.tpc_begin = () => void order.push(first)
      second.tpc_begin = () => void order.push(second)
      tm.commit()
      expect(order).to.deep.equal([first, second])
    })

    it('compares sort keys as plain strings (code points), not by locale', () => {
      const { txn, tm, journal } = setup()
      for (const key of ['b', 'B', 'a', 'Z']) txn.join(new RecordingDataManager(key, journal))
      tm.commit()
      expect(journal.filter((e) => e.endsWith('.tpc_begin'))).to.deep.equal(['B.tpc_begin', 'Z.tpc_begin', 'a.tpc_begin', 'b.tpc_begin'])
    })

    it('a transaction with no managers commits', () => {
      const { txn, tm } = setup()
      tm.commit()
      expect(txn.status).to.equal(Status.COMMITTED)
    })

    it('cannot be committed twice', () => {
      const { txn, tm } = setup()
      tm.commit()
      expect(() => txn.commit()).to.throw(TransactionStateError, /Committed/)
    })

    const cleanups: Array<[Phase, string[]]> = [
      // failing phase → what each of a (ok) and b (failing) see; c votes after b, so never votes
      ['tpc_begin', ['a.tpc_begin', 'b.tpc_begin', 'a.abort', 'b.abort', 'c.abort', 'a.tpc_abort', 'b.tpc_abort', 'c.tpc_abort']],
      ['commit', [
        'a.tpc_begin', 'b.tpc_begin', 'c.tpc_begin', 'a.commit', 'b.commit',
        'a.abort', 'b.abort', 'c.abort', 'a.tpc_abort', 'b.tpc_abort', 'c.tpc_abort',
      ]],
      ['tpc_vote', [
        'a.tpc_begin', 'b.tpc_begin', 'c.tpc_begin', 'a.commit', 'b.commit', 'c.commit', 'a.tpc_vote', 'b.tpc_vote',
        // a voted: it is not aborted, only tpc_aborted
        'b.abort', 'c.abort', 'a.tpc_abort', 'b.tpc_abort', 'c.tpc_abort',
      ]],
      ['tpc_finish', [
        'a.tpc_begin', 'b.tpc_begin', 'c.tpc_begin', 'a.commit', 'b.commit', 'c.commit',
        'a.tpc_vote', 'b.tpc_vote', 'c.tpc_vote', 'a.tpc_finish', 'b.tpc_finish',
        'a.tpc_abort', 'b.tpc_abort', 'c.tpc_abort',
      ]],
    ]
    for (const [phase, expected] of cleanups) {
      it(`on a failure in ${phase}: aborts the managers that did not vote, tpc_aborts all, rethrows the original`, () => {
        const { txn, tm, journal, logger } = setup()
        const synch = new RecordingSynchronizer()
        tm.registerSynch(synch)
        txn.join(new RecordingDataManager('c', journal))
        txn.join(new RecordingDataManager('b', journal, phase))
        txn.join(new RecordingDataManager('a', journal))
        const error = thrown(() => tm.commit())
        expect(error).to.be.instanceOf(Error)
        expect((error as Error).message).to.equal(`b failed in ${phase}`)
        expect(journal).to.deep.equal(expected)
        expect(txn.status).to.equal(Status.COMMITFAILED)
        expect(synch.names()).to.deep.equal(['newTransaction', 'beforeCompletion', 'afterCompletion'])
        expect(logger.errors).to.deep.equal([])
        if (phase === 'tpc_finish') {
          expect(logger.criticals).to.have.length(1)
          expect(logger.criticals[0]!.message).to.match(/tpc_finish.*inconsistent/)
          expect(logger.criticals[0]!.error).to.equal(error)
        } else {
          expect(logger.criticals).to.deep.equal([])
        }
      })
    }

    it('logs, and does not throw, errors of the cleanup; the original error is rethrown', () => {
      const { txn, tm, journal, logger } = setup()
      txn.join(new RecordingDataManager('a', journal, 'abort'))
      const b = new RecordingDataManager('b', journal, 'commit')
      txn.join(b)
      const c = new RecordingDataManager('c', journal, 'tpc_abort')
      txn.join(c)
      const error = thrown(() => tm.commit())
      expect((error as Error).message).to.equal('b failed in commit')
      expect(journal.slice(-6)).to.deep.equal(['a.abort', 'b.abort', 'c.abort', 'a.tpc_abort', 'b.tpc_abort', 'c.tpc_abort'])
      expect(logger.errors.map((e) => e.message)).to.deep.equal([
        'Error in abort() on data manager RecordingDataManager(a)',
        'Error in tpc_abort() on data manager RecordingDataManager(c)',
      ])
    })

    it('a failing synchronizer afterCompletion in the cleanup does not hide the original error', () => {
      const { txn, tm, logger } = setup()
      const synch = new RecordingSynchronizer([], 's', 'afterCompletion')
      tm.registerSynch(synch)
      txn.join(new RecordingDataManager('a', [], 'tpc_vote'))
      expect(() => tm.commit()).to.throw('a failed in tpc_vote')
      expect(logger.errors).to.have.length(1)
      expect((logger.errors[0]!.error as Error).message).to.equal('s failed in afterCompletion')
    })
  })

  describe('a hosed transaction (after a failed commit)', () => {
    function hosed() {
      const ctx = setup()
      ctx.txn.join(new RecordingDataManager('a', ctx.journal, 'tpc_vote'))
      const cause = thrown(() => ctx.tm.commit())
      return { ...ctx, cause }
    }

    it('throws TransactionFailedError carrying the first cause from commit, join and savepoint', () => {
      const { txn, cause } = hosed()
      for (const op of [() => txn.commit(), () => txn.join(new RecordingDataManager('x')), () => txn.savepoint()]) {
        const error = thrown(op)
        expect(error).to.be.instanceOf(TransactionFailedError)
        expect((error as TransactionFailedError).cause).to.equal(cause)
        expect((error as Error).message).to.match(/previously failed[\s\S]*a failed in tpc_vote/)
      }
    })

    it('stays the current transaction until abort, which frees it', () => {
      const { txn, tm, journal } = hosed()
      expect(tm.get()).to.equal(txn)
      expect(() => tm.commit()).to.throw(TransactionFailedError)
      journal.length = 0
      tm.abort()
      expect(journal).to.deep.equal(['a.abort'], 'the failed manager stays joined until abort')
      expect(tm.peek()).to.equal(null)
      expect(tm.get()).to.not.equal(txn)
    })

    it('begin() in implicit mode aborts the hosed transaction and starts afresh', () => {
      const { txn, tm } = hosed()
      const next = tm.begin()
      expect(next).to.not.equal(txn)
      expect(next.status).to.equal(Status.ACTIVE)
    })
  })

  describe('using (Symbol.dispose)', () => {
    it('aborts a transaction its block did not commit, and frees it from its manager', () => {
      const { tm, journal } = setup()
      {
        using txn = tm.get()
        txn.join(new RecordingDataManager('a', journal))
      }
      expect(journal).to.deep.equal(['a.abort'])
      expect(tm.peek()).to.equal(null)
    })

    it('leaves a committed or an aborted transaction alone', () => {
      const { tm, journal } = setup()
      {
        using txn = tm.get()
        txn.join(new RecordingDataManager('a', journal))
        tm.commit()
      }
      expect(journal).to.deep.equal(['a.tpc_begin', 'a.commit', 'a.tpc_vote', 'a.tpc_finish'])
      journal.length = 0
      const next = tm.begin()
      {
        using txn = next
        txn.join(new RecordingDataManager('b', journal))
        txn.abort()
        // a transaction begun since is not the disposed one's to end
        tm.begin()
      }
      expect(journal).to.deep.equal(['b.abort'])
      expect(tm.peek()).to.not.equal(null)
    })

    it('aborts a doomed or hosed one, and a failure of the block is not hidden by it', () => {
      const { tm, journal } = setup()
      {
        using txn = tm.get()
        txn.join(new RecordingDataManager('a', journal))
        txn.doom()
      }
      expect(journal).to.deep.equal(['a.abort'])
      journal.length = 0
      const error = thrown(() => {
        using txn = tm.begin()
        txn.join(new RecordingDataManager('b', journal, 'tpc_vote'))
        tm.commit()
      })
      expect((error as Error).message).to.equal('b failed in tpc_vote')
      expect(journal.slice(-2)).to.deep.equal(['b.tpc_abort', 'b.abort'])
      expect(tm.peek()).to.equal(null)
    })
  })

  describe('hooks', () => {
    it('before-commit hooks run in order with their arguments, before any data manager', () => {
      const { txn, tm, journal } = setup()
      txn.join(new RecordingDataManager('a', journal))
      txn.addBeforeCommitHook((x: number, y: string) => void journal.push(`hook1(${x},${y})`), 1, 'one')
      txn.addBeforeCommitHook(() => void journal.push('hook2'))
      tm.commit()
      expect(journal.slice(0, 3)).to.deep.equal(['hook1(1,one)', 'hook2', 'a.tpc_begin'])
    })

    it('hooks added by a before-commit hook run too', () => {
      const { txn, tm, journal } = setup()
      txn.addBeforeCommitHook(() => {
        journal.push('outer')
        txn.addBeforeCommitHook(() => void journal.push('inner'))
      })
      tm.commit()
      expect(journal).to.deep.equal(['outer', 'inner'])
    })

    it('a failing before-commit hook stops the commit before any manager and later hook; the transaction stays usable', () => {
      const { txn, tm, journal, logger } = setup()
      txn.join(new RecordingDataManager('a', journal))
      txn.addBeforeCommitHook(() => void journal.push('first'))
      txn.addBeforeCommitHook(() => {
        throw new Error('hook says no')
      })
      txn.addBeforeCommitHook(() => void journal.push('third'))
      expect(() => tm.commit()).to.throw('hook says no')
      expect(journal).to.deep.equal(['first'])
      expect(logger.errors).to.deep.equal([])
      expect(txn.status).to.equal(Status.ACTIVE)
      expect(txn.getBeforeCommitHooks()).to.deep.equal([], 'hooks are consumed')
      tm.commit()
      expect(journal).to.deep.equal(['first', 'a.tpc_begin', 'a.commit', 'a.tpc_vote', 'a.tpc_finish'])
    })

    it('after-commit hooks get the success flag first, then their arguments', () => {
      const { txn, tm } = setup()
      const calls: unknown[][] = []
      txn.addAfterCommitHook((ok: boolean, a: number) => void calls.push([ok, a]), 7)
      tm.commit()
      expect(calls).to.deep.equal([[true, 7]])

      const t2 = tm.begin()
      t2.join(new RecordingDataManager('a', [], 'tpc_vote'))
      t2.addAfterCommitHook((ok: boolean) => void calls.push([ok]))
      expect(() => tm.commit()).to.throw()
      expect(calls).to.deep.equal([[true, 7], [false]])
    })

    it('after-commit hook errors are logged and the other hooks still run; managers are aborted afterwards', () => {
      const { txn, tm, journal, logger } = setup()
      txn.join(new RecordingDataManager('a', journal))
      txn.addAfterCommitHook(function failing() {
        throw new Error('late')
      })
      txn.addAfterCommitHook((ok: boolean) => void journal.push(`second(${ok})`))
      tm.commit()
      expect(journal.slice(-2)).to.deep.equal(['second(true)', 'a.abort'])
      expect(logger.errors).to.have.length(1)
      expect(logger.errors[0]!.message).to.equal('Error in hook failing')
    })

    it('lists registered hooks with their arguments, and clears them at the end', () => {
      const { txn, tm } = setup()
      const hook = (): void => {}
      const after = (_ok: boolean, _x: string): void => {}
      txn.addBeforeCommitHook(hook)
      txn.addAfterCommitHook(after, 'x')
      txn.addBeforeAbortHook(hook)
      txn.addAfterAbortHook(hook)
      expect(txn.getBeforeCommitHooks()).to.deep.equal([{ hook, args: [] }])
      expect(txn.getAfterCommitHooks()).to.deep.equal([{ hook: after, args: ['x'] }])
      expect(txn.getBeforeAbortHooks()).to.deep.equal([{ hook, args: [] }])
      expect(txn.getAfterAbortHooks()).to.deep.equal([{ hook, args: [] }])
      tm.commit()
      expect(txn.getBeforeCommitHooks()).to.deep.equal([])
      expect(txn.getAfterCommitHooks()).to.deep.equal([])
      expect(txn.getBeforeAbortHooks()).to.deep.equal([], 'abort hooks are not called on commit, but cleared')
      expect(txn.getAfterAbortHooks()).to.deep.equal([])
    })

    it('abort hooks run around the abort; commit hooks do not', () => {
      const { txn, tm, journal } = setup()
      txn.join(new RecordingDataManager('a', journal))
      txn.addBeforeCommitHook(() => void journal.push('before-commit'))
      txn.addAfterCommitHook(() => void journal.push('after-commit'))
      txn.addBeforeAbortHook((x: string) => void journal.push(`before-abort(${x})`), 'x')
      txn.addAfterAbortHook(() => void journal.push('after-abort'))
      tm.abort()
      expect(journal).to.deep.equal(['before-abort(x)', 'a.abort', 'after-abort', 'a.abort'])
    })

    it('abort hooks are not called by a failed commit, and survive it', () => {
      const { txn, tm, journal } = setup()
      txn.join(new RecordingDataManager('a', journal, 'tpc_vote'))
      txn.addBeforeAbortHook(() => void journal.push('before-abort'))
      expect(() => tm.commit()).to.throw()
      expect(journal).to.not.include('before-abort')
      expect(txn.getBeforeAbortHooks()).to.have.length(1)
      tm.abort()
      expect(journal).to.include('before-abort')
    })

    it('abort hook errors are logged and the abort goes on', () => {
      const { txn, tm, journal, logger } = setup()
      txn.join(new RecordingDataManager('a', journal))
      txn.addBeforeAbortHook(() => {
        throw new Error('b1')
      })
      txn.addBeforeAbortHook(() => void journal.push('b2'))
      txn.addAfterAbortHook(() => {
        throw new Error('a1')
      })
      txn.addAfterAbortHook(() => void journal.push('a2'))
      tm.abort()
      expect(journal).to.deep.equal(['b2', 'a.abort', 'a2', 'a.abort'])
      expect(logger.errors.map((e) => (e.error as Error).message)).to.deep.equal(['b1', 'a1'])
      expect(tm.peek()).to.equal(null)
    })
  })

  describe('synchronizers', () => {
    it('are told before and after a commit, with the transaction', () => {
      const { tm, journal } = setup()
      const synch = new RecordingSynchronizer(journal)
      tm.registerSynch(synch)
      const txn = tm.get()
      txn.join(new RecordingDataManager('a', journal))
      txn.addBeforeCommitHook(() => void journal.push('hook'))
      tm.commit()
      expect(journal).to.deep.equal([
        'synch.newTransaction', // registered while the transaction was current
        'hook',
        'synch.beforeCompletion',
        'a.tpc_begin', 'a.commit', 'a.tpc_vote', 'a.tpc_finish',
        'synch.afterCompletion',
      ])
      expect(synch.calls.every(([, t]) => t === txn)).to.equal(true)
    })

    it('are told before and after an abort, afterCompletion once the transaction is no longer current', () => {
      const { tm, txn, journal } = setup()
      let currentDuringAfter: unknown = 'unset'
      const synch = new RecordingSynchronizer(journal)
      synch.afterCompletion = (t) => {
        journal.push('synch.afterCompletion')
        currentDuringAfter = tm.peek()
        expect(t).to.equal(txn)
      }
      tm.registerSynch(synch)
      txn.join(new RecordingDataManager('a', journal))
      tm.abort()
      expect(journal).to.deep.equal(['synch.newTransaction', 'synch.beforeCompletion', 'a.abort', 'synch.afterCompletion'])
      expect(currentDuringAfter).to.equal(null)
    })

    it('a failing beforeCompletion stops a commit before any data manager is touched', () => {
      const { tm, txn, journal } = setup()
      tm.registerSynch(new RecordingSynchronizer(journal, 's', 'beforeCompletion'))
      txn.join(new RecordingDataManager('a', journal))
      expect(() => tm.commit()).to.throw('s failed in beforeCompletion')
      expect(journal).to.deep.equal(['s.newTransaction', 's.beforeCompletion'])
      expect(txn.status).to.equal(Status.ACTIVE)
    })

    it('a failing synchronizer during abort: every manager is still aborted, the error is thrown at the end', () => {
      const { tm, txn, journal, logger } = setup()
      const bad = new RecordingSynchronizer(journal, 'bad', 'beforeCompletion')
      tm.registerSynch(bad)
      txn.join(new RecordingDataManager('a', journal))
      expect(() => tm.abort()).to.throw('bad failed in beforeCompletion')
      expect(journal).to.include('a.abort')
      expect(journal).to.include('bad.afterCompletion')
      expect(logger.errors).to.have.length(1)
      expect(tm.peek()).to.equal(null, 'the transaction ended anyway')
    })

    it('after a successful commit, a failing afterCompletion is logged and the others are still told', () => {
      const { tm, journal, logger } = setup()
      tm.registerSynch(new RecordingSynchronizer(journal, 's1', 'afterCompletion'))
      tm.registerSynch(new RecordingSynchronizer(journal, 's2'))
      tm.commit()
      expect(journal.filter((e) => e.endsWith('afterCompletion'))).to.have.length(2)
      expect(logger.errors).to.have.length(1)
    })

    it('a failing abort of a data manager does not stop the others; the first error is thrown', () => {
      const { tm, txn, journal, logger } = setup()
      txn.join(new RecordingDataManager('a', journal, 'abort'))
      txn.join(new RecordingDataManager('b', journal, 'abort'))
      txn.join(new RecordingDataManager('c', journal))
      expect(() => tm.abort()).to.throw('a failed in abort')
      expect(journal).to.deep.equal(['a.abort', 'b.abort', 'c.abort'])
      expect(logger.errors).to.have.length(2)
    })
  })

  describe('isRetryableError', () => {
    it('is true for TransientError and its subclasses', () => {
      const { txn } = setup()
      class ConflictLike extends TransientError {}
      expect(txn.isRetryableError(new TransientError('t'))).to.equal(true)
      expect(txn.isRetryableError(new ConflictLike('c'))).to.equal(true)
      expect(txn.isRetryableError(new Error('plain'))).to.equal(false)
      expect(txn.isRetryableError('not even an error')).to.equal(false)
    })

    it('asks every joined manager that has shouldRetry', () => {
      const { txn } = setup()
      const seen: unknown[] = []
      const no = Object.assign(new RecordingDataManager('no'), { shouldRetry: (e: unknown) => (seen.push(e), false) })
      const yes = Object.assign(new RecordingDataManager('yes'), { shouldRetry: (e: unknown) => e instanceof RangeError })
      txn.join(new RecordingDataManager('plain'))
      txn.join(no)
      txn.join(yes)
      const err = new RangeError('lock timeout')
      expect(txn.isRetryableError(err)).to.equal(true)
      expect(txn.isRetryableError(new Error('x'))).to.equal(false)
      expect(seen).to.have.length(2)
    })
  })

  it('works without a manager', () => {
    const txn = new Transaction()
    const journal: string[] = []
    txn.join(new RecordingDataManager('a', journal))
    txn.commit()
    expect(journal).to.have.length(4)
    expect(txn.status).to.equal(Status.COMMITTED)
  })
})

describe('default transaction logger', () => {
  it('reports a failure in tpc_finish as a process warning', async () => {
    const tm = new TransactionManager()
    const txn = tm.begin()
    txn.join(new RecordingDataManager('a', [], 'tpc_finish'))
    const warned = new Promise<Error>((resolve) => process.once('warning', resolve))
    expect(() => tm.commit()).to.throw('a failed in tpc_finish')
    const warning = (await warned) as Error & { code?: string }
    expect(warning.code).to.equal('WENDELIN_TPC_FINISH_FAILED')
    expect(warning.message).to.match(/tpc_finish[\s\S]*a failed in tpc_finish/)
  })
})
