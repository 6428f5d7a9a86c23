// Random operation sequences against a Map model, with commits, aborts, cache minimization and
// reopening between them; check() after every step (fast-check shrinks any failure it finds).
import { expect } from 'chai'
import fc from 'fast-check'
import { TransactionManager } from '@wendelin/transaction'
import { DB, MemoryStorage } from '@wendelin/zodb'
import { IOBTree, check, type BTree } from '@wendelin/btrees'

type Op =
  | { kind: 'set'; key: number; value: number }
  | { kind: 'delete'; key: number }
  | { kind: 'bulkSet'; from: number; count: number; value: number }
  | { kind: 'bulkDelete'; from: number; count: number }
  | { kind: 'commit' }
  | { kind: 'abort' }
  | { kind: 'minimize' }
  | { kind: 'reopen' }

const KEYS = 5000
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 20, arbitrary: fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: KEYS }), value: fc.integer() }) },
  { weight: 10, arbitrary: fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: KEYS }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('bulkSet' as const), from: fc.integer({ min: 0, max: KEYS }), count: fc.integer({ min: 1, max: 400 }), value: fc.integer() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('bulkDelete' as const), from: fc.integer({ min: 0, max: KEYS }), count: fc.integer({ min: 1, max: 600 }) }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'commit' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'abort' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'minimize' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
)

describe('B-tree against a Map model (property-based)', () => {
  it('agrees with the model after every step, through splits, bucket removals and reloads', async function () {
    this.timeout(120_000)
    let splitsSeen = 0
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 20, maxLength: 120 }), async (ops) => {
        const db = await DB.open(new MemoryStorage())
        let tm = new TransactionManager({ explicit: true })
        let conn = db.open({ transactionManager: tm })
        tm.begin()
        conn.root.t = new IOBTree<number>()
        tm.commit()
        tm.begin()
        let committed = new Map<number, number>()
        let model = new Map<number, number>()
        let tree = conn.root.t as BTree<number, number>
        const apply = (k: number, v: number | null) => {
          if (v === null) {
            expect(tree.delete(k)).to.equal(model.delete(k))
          } else {
            tree.set(k, v)
            model.set(k, v)
          }
        }
        for (const o of ops) {
          switch (o.kind) {
            case 'set':
              apply(o.key, o.value)
              break
            case 'delete':
              apply(o.key, null)
              break
            case 'bulkSet':
              for (let k = o.from; k < o.from + o.count; k++) apply(k, o.value + k)
              break
            case 'bulkDelete':
              for (let k = o.from; k < o.from + o.count; k++) apply(k, null)
              break
            case 'commit':
              tm.commit()
              tm.begin()
              committed = new Map(model)
              break
            case 'abort':
              tm.abort()
              tm.begin()
              model = new Map(committed)
              break
            case 'minimize':
              tm.commit()
              tm.begin()
              committed = new Map(model)
              conn.cacheMinimize()
              break
            case 'reopen':
              tm.commit()
              committed = new Map(model)
              conn.close()
              tm = new TransactionManager({ explicit: true })
              conn = db.open({ transactionManager: tm })
              tm.begin()
              tree = conn.root.t as BTree<number, number>
              break
          }
          expect(check(tree)).to.equal(model.size)
          if ((tree as unknown as { _children: unknown })._children !== null) splitsSeen++
        }
        const expected = [...model.entries()].sort((x, y) => x[0] - y[0])
        expect([...tree.entries()]).to.deep.equal(expected)
        expect([...tree.entries(undefined, undefined, { reverse: true })]).to.deep.equal(expected.reverse())
        tm.abort()
        db.close()
      }),
      { numRuns: 60, seed: 4242 },
    )
    expect(splitsSeen).to.be.greaterThan(100, 'the sequences grew trees past one bucket')
  })
})
