// Review findings on SQLiteStorage shared by several instances / processes.
import { expect } from 'chai'
import { fork } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { SQLiteStorage } from '@wendelin/zodb'

import { record } from './storage-conformance.js'
import { commitRecords, freshSQLiteFile, meta, removeSQLiteFiles } from './sqlite-helpers.js'

const here = path.dirname(fileURLToPath(import.meta.url))
after(removeSQLiteFiles)

describe('SQLiteStorage oid reservations made while a voted transaction holds the write lock', () => {
  it('an oid handed out between vote and abort is never handed out again by another process', async function () {
    this.timeout(30_000)
    const file = freshSQLiteFile()
    const s = new SQLiteStorage(file)
    commitRecords(s, [[s.newOid(), 0n, record({ value: 'first' })]]) // a block reserved, one oid used
    // Use up the rest of the block, so that the next newOid reserves a new one.
    const before: bigint[] = []
    for (let i = 0; i < 63; i++) before.push(s.newOid())
    // A transaction votes (the write lock is held), then someone asks for an oid (a ZEO server
    // serving another client's newOids between this client's vote and its finish, say)...
    const txn = meta()
    s.tpc_begin(txn)
    s.store(before[0]!, 0n, record({ value: 'voted' }), txn)
    s.tpc_vote(txn)
    const handedOut = s.newOid()
    // ... and the voted transaction aborts.
    s.tpc_abort(txn)
    // Another process reserves oids now: it must not get the one handed out above.
    const child = fork(path.join(here, 'fixtures', 'sqlite-new-oids.js'), [file, '64'], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
    let out = ''
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    expect(await new Promise((resolve) => child.once('exit', resolve))).to.equal(0)
    const theirs = out.trim().split('\n').map(BigInt)
    expect(theirs).to.have.length(64)
    expect(theirs).to.not.include(handedOut, `oid ${handedOut} was handed out by both processes`)
    // And the consequence: the object this process creates with that oid conflicts with theirs.
    const other = new SQLiteStorage(file)
    const dup = theirs.find((o) => o === handedOut)
    if (dup !== undefined) commitRecords(other, [[dup, 0n, record({ value: 'theirs' })]])
    other.close()
    commitRecords(s, [[handedOut, 0n, record({ value: 'mine' })]])
    // The aborted transaction left nothing behind.
    expect(() => s.loadBefore(before[0]!, 0x7fffffffffffffffn)).to.throw(/POSKey|0x/)
    expect([...s.iterator()].map((t) => t.records.map((r) => r.oid))).to.deep.equal([[1n], [handedOut]])
    s.close()
  })
})
