// wendelin verify SPEC: every record decodes, every reference resolves, every B-tree passes
// check(), every ZBigFile's blocks are readable. Exit status 0 when all is well, 1 otherwise.

import { type Command, InvalidArgumentError } from 'commander'
import { BTree, TreeSet, check } from '@wendelin/btrees'
import { ZBigFile } from '@wendelin/bigfile'
import { DB, MAX_TID, type Oid, type Persistent, decodeForDump, findClass, idToHex, referencesIn } from '@wendelin/zodb'

import { action, openExisting, progress } from './common.js'

const hex = (oid: Oid) => `0x${idToHex(oid)}`

/** The oids a decoded tree-node state lists as its children (they are not trees of their own). */
function childrenOf(state: unknown): string[] {
  const children = (state as { _children?: unknown })?._children
  if (!Array.isArray(children)) return []
  return children.map((c) => (c as { $ref?: string }).$ref).filter((r): r is string => typeof r === 'string')
}

function isA(className: string, base: abstract new (...args: never[]) => object): boolean {
  const cls = findClass(className)
  return cls !== undefined && (cls === base || cls.prototype instanceof base)
}

/** A bad value is a bad argument: one line and status 2, as for the other commands' options. */
function positiveInt(value: string): number {
  const n = Number(value)
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive whole number')
  return n
}

export function register(cli: Command): void {
  cli
    .command('verify')
    .description('check a database: records decode, references resolve, B-trees pass check(), ZBigFile blocks read')
    .argument('<spec>', 'storage spec or SQLite file path')
    .option('--max-problems <n>', 'stop listing after this many problems', positiveInt, 50)
    .action(
      action('verify', async (spec: string, options: { maxProblems: number }) => {
        const storage = await openExisting(spec, { readOnly: true })
        const problems: string[] = []
        const limit = options.maxProblems
        const problem = (text: string) => {
          if (problems.length < limit) process.stdout.write(`problem: ${text}\n`)
          problems.push(text)
        }
        try {
          // 1. Every revision decodes; remember each object's class (newest revision) and whether it exists now.
          const classOf = new Map<Oid, string>()
          const trees: Oid[] = []
          const treeChildren = new Set<string>()
          const zfiles: Oid[] = []
          let revisions = 0
          const bar = progress('reading records', null)
          for (const t of storage.iterator()) {
            for (const r of t.records) {
              revisions++
              if (r.data === null) {
                classOf.delete(r.oid)
                continue
              }
              try {
                classOf.set(r.oid, decodeForDump(r.data).className)
              } catch (error) {
                problem(`oid ${hex(r.oid)} revision 0x${idToHex(r.tid)} does not decode: ${(error as Error).message}`)
              }
            }
            bar.update(revisions)
          }
          bar.stop()
          // 2. Every reference of every current record resolves; find trees, their children and ZBigFiles.
          const check2 = progress('checking references', classOf.size)
          let n = 0
          for (const [oid, className] of classOf) {
            check2.update(++n)
            const rev = storage.loadBefore(oid, MAX_TID)
            if (rev === null) continue
            for (const ref of referencesIn(rev.data)) {
              if (!classOf.has(ref)) problem(`oid ${hex(oid)} (${className}) refers to oid ${hex(ref)}, which does not exist`)
            }
            if (isA(className, BTree) || isA(className, TreeSet)) {
              trees.push(oid)
              for (const c of childrenOf(decodeForDump(rev.data).state)) treeChildren.add(c)
            } else if (isA(className, ZBigFile)) {
              zfiles.push(oid)
            }
            // Application classes this command does not know are decoded and their references checked.
          }
          check2.stop()
          // 3. B-trees (each tree once, from its root) and ZBigFiles, through a connection.
          const db = new DB(storage)
          const conn = db.open({ before: storage.lastTransaction() + 1n })
          let treesChecked = 0
          let blocksRead = 0
          try {
            for (const oid of trees) {
              if (treeChildren.has(hex(oid))) continue
              try {
                check(conn.get(oid) as unknown as BTree<unknown, unknown>)
                treesChecked++
              } catch (error) {
                problem(`B-tree oid ${hex(oid)}: ${(error as Error).message}`)
              }
            }
            for (const oid of zfiles) {
              const zf = conn.get(oid) as unknown as ZBigFile
              const buf = new Uint8Array(zf.blksize)
              for (const blk of zf.blktab.keys()) {
                try {
                  zf.readblk(blk, buf)
                  blocksRead++
                } catch (error) {
                  problem(`ZBigFile oid ${hex(oid)} block ${blk}: ${(error as Error).message}`)
                }
              }
              ;(zf as unknown as Persistent)._p_deactivate()
            }
          } finally {
            conn.close()
            db.close()
          }
          const summary = `${classOf.size} objects, ${revisions} revisions, ${treesChecked} B-trees, ${zfiles.length} ZBigFiles (${blocksRead} blocks)`
          if (problems.length === 0) {
            process.stdout.write(`ok: ${summary}\n`)
            return 0
          }
          if (problems.length > limit) process.stdout.write(`... and ${problems.length - limit} more\n`)
          process.stdout.write(`${problems.length} problem${problems.length === 1 ? '' : 's'} in ${summary}\n`)
          return 1
        } finally {
          if (!storage.closed) storage.close()
        }
      }),
    )
}

