// The README's examples, typed end to end without casts: views go to ndarray-ops as they are.
import { expect } from 'chai'
import ndarray from 'ndarray'
import ops from 'ndarray-ops'
import path from 'node:path'

import { ZBigArray, recordDType, releaseView } from '@wendelin/bigarray'
import { TransactionManager } from '@wendelin/transaction'
import { DB, SQLiteStorage } from '@wendelin/zodb'

import { PS, cleanup, ram, tmpDir } from './helpers.js'

describe('bigarray README examples', () => {
  afterEach(() => cleanup())

  it('run as written (with small sizes)', () => {
    const db = new DB(new SQLiteStorage(path.join(tmpDir(), 'db.sqlite')))
    const transaction = new TransactionManager()
    const conn = db.open({ transactionManager: transaction })
    try {
      const A = new ZBigArray([10_000, 3], 'float64', { blksize: PS })
      ;(conn.root as Record<string, unknown>).measurements = A
      transaction.commit()
      A.open({ ram: ram(8) })
      const rows = A.slice([1000, 2000])
      ops.assigns(rows, 1.5)
      A.set(5, 2, 42)
      A.assign(new Float64Array([1, 2, 3]), -1)
      A.append(ndarray(new Float64Array(6), [2, 3]))
      transaction.commit()
      let sum = 0
      for (const c of A.chunks({ bytes: 2 * PS })) sum += ops.sum(c.array)
      expect(sum).to.equal(1000 * 3 * 1.5 + 42 + 6)
      {
        const v = A.view([0, 2000], 0)
        expect(ops.sup(v.array)).to.equal(1.5)
        v.release()
      }
      releaseView(rows)

      const aligned = recordDType({ t: { dtype: 'float64', offset: 0 }, qty: { dtype: 'int32', offset: 8 } }, { itemsize: 16 })
      const T = new ZBigArray([1000], aligned, { blksize: PS })
      ;(conn.root as Record<string, unknown>).trades = T
      expect(() => T.open({ ram: ram(8) })).to.throw(TypeError, /belong to a connection/) // not stored yet
      transaction.commit()
      T.open({ ram: ram(8) })
      const v = T.slice([0, 1000])
      ops.assigns(v.fields.qty!, 2)
      expect(ops.sum(v.fields.qty!)).to.equal(2000)
      T.set(7, { t: 1.5, qty: 10 })
      expect(T.get(7)).to.deep.equal({ t: 1.5, qty: 10 })
      releaseView(v)
      transaction.commit()
      A.close()
      T.close()
    } finally {
      db.close()
    }
  })
})
