// Random sequences of changes, savepoints, rollbacks, cache flushes, commits, aborts and
// concurrent commits by another connection, checked step by step against a plain model of
// what one connection must see: its snapshot of the committed state overlaid with its own
// uncommitted changes.
import { expect } from 'chai'
import { InvalidSavepointRollbackError, type Savepoint } from '@wendelin/transaction'
import { ConflictError, PersistentList } from '@wendelin/zodb'

import { Item, newDB, session } from './helpers.js'

function prng(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x / 2 ** 32
  }
}

const SIZE = 6
const STEPS = 250

describe('random operations against a model', () => {
  for (let seed = 1; seed <= 12; seed++) {
    it(`seed ${seed}`, () => {
      const random = prng(seed)
      const pick = (n: number) => Math.floor(random() * n)
      const db = newDB({ cacheSize: 3 })
      const me = session(db)
      me.root.items = new PersistentList(Array.from({ length: SIZE }, (_, i) => new Item(`i${i}`, 0)))
      me.tm.commit()
      const other = session(db)

      let committed: unknown[] = new Array(SIZE).fill(0)
      let snapshot = [...committed] // the committed state my transaction reads
      let view = [...committed] // what I must see: the snapshot with my own changes
      let dirty = new Set<number>() // items I changed (or created) in this transaction
      const savepoints: { sp: Savepoint; view: unknown[]; dirty: Set<number> }[] = []
      let counter = 0
      const log: string[] = []

      const list = () => me.root.items as PersistentList<Item>
      const boundary = () => {
        snapshot = [...committed]
        view = [...committed]
        dirty = new Set()
        savepoints.length = 0
      }

      for (let step = 0; step < STEPS; step++) {
        const op = pick(10)
        if (op <= 2) {
          const i = pick(view.length)
          const v = `v${++counter}`
          log.push(`set ${i}=${v}`)
          list().get(i)!.value = v
          view[i] = v
          dirty.add(i)
        } else if (op === 3) {
          log.push('savepoint')
          savepoints.push({ sp: me.tm.savepoint(), view: [...view], dirty: new Set(dirty) })
        } else if (op === 4 && savepoints.length > 0) {
          const k = pick(savepoints.length)
          log.push(`rollback to ${k}`)
          savepoints[k]!.sp.rollback()
          view = [...savepoints[k]!.view]
          dirty = new Set(savepoints[k]!.dirty)
          savepoints.length = k + 1
        } else if (op === 5) {
          log.push('cacheMinimize')
          me.conn.cacheMinimize()
        } else if (op === 6) {
          const i = pick(committed.length)
          const v = `other${++counter}`
          log.push(`other sets ${i}=${v}`)
          other.tm.begin()
          ;(other.root.items as PersistentList<Item>).get(i)!.value = v
          other.tm.commit()
          committed[i] = v
        } else if (op === 7) {
          const v = `new${++counter}`
          log.push(`append ${v}`)
          list().push(new Item('new', v))
          view.push(v)
          dirty.add(view.length - 1)
        } else if (op === 8) {
          log.push('commit')
          // A change to an item someone committed after my snapshot is a conflict.
          const conflict = [...dirty].some((i) => i < snapshot.length && committed[i] !== snapshot[i])
          if (conflict) {
            expect(() => me.tm.commit(), log.join('; ')).to.throw(ConflictError)
            me.tm.abort()
          } else {
            me.tm.commit()
            for (const i of dirty) committed[i] = view[i]
          }
          boundary()
        } else {
          log.push('abort')
          me.tm.abort()
          boundary()
        }
        expect(list().map((it) => it.value), log.slice(-12).join('; ')).to.deep.equal(view)
      }
      // Whatever happened, a fresh connection sees exactly what was committed.
      me.tm.abort()
      const check = session(db)
      expect((check.root.items as PersistentList<Item>).map((it) => it.value)).to.deep.equal(committed)
      // Savepoints of an ended transaction cannot be rolled back.
      const sp = me.tm.savepoint()
      me.tm.abort()
      expect(() => sp.rollback()).to.throw(InvalidSavepointRollbackError)
      committed = []
    })
  }
})
