// wendelin dump SPEC: transactions and their records, decoded with their class names.

import type { Command } from 'commander'
import { type Oid, type Tid, decodeForDump, idToHex } from '@wendelin/zodb'

import { CliError, action, formatTid, openExisting, parseId, toJson } from './common.js'

interface DumpOptions {
  oid?: string
  tid?: string
  json?: boolean
}

function decode(data: Uint8Array | null): { className: string; state: unknown } | { error: string } | null {
  if (data === null) return null
  try {
    return decodeForDump(data)
  } catch (error) {
    return { error: (error as Error).message }
  }
}

export function register(cli: Command): void {
  cli
    .command('dump')
    .description('print transactions and their records, decoded with their classes')
    .argument('<spec>', 'storage spec or SQLite file path')
    .option('--oid <oid>', 'only records of this object (decimal or 0x hex)')
    .option('--tid <tid>', 'only this transaction (decimal or 0x hex)')
    .option('--json', 'one JSON object per transaction (JSON lines)')
    .action(
      action('dump', async (spec: string, options: DumpOptions) => {
        const oid: Oid | null = options.oid === undefined ? null : parseId(options.oid, '--oid')
        const tid: Tid | null = options.tid === undefined ? null : parseId(options.tid, '--tid')
        const storage = await openExisting(spec, { readOnly: true })
        let shown = 0
        try {
          for (const t of tid === null ? storage.iterator() : storage.iterator(tid, tid)) {
            if (process.stdout.destroyed) return // the reader went away (`| head`)
            const records = t.records.filter((r) => oid === null || r.oid === oid)
            if (oid !== null && records.length === 0) continue
            shown++
            if (options.json) {
              process.stdout.write(
                `${toJson({
                  tid: `0x${idToHex(t.tid)}`,
                  time: formatTid(t.tid).replace(/^.*\((.*)\)$/, '$1'),
                  user: t.user,
                  description: t.description,
                  extension: t.extension,
                  records: records.map((r) => ({ oid: `0x${idToHex(r.oid)}`, size: r.data?.length ?? 0, ...decodeOrDeleted(r.data) })),
                })}\n`,
              )
              continue
            }
            process.stdout.write(`transaction ${formatTid(t.tid)}${t.status === 'p' ? ' (packed)' : ''}  user ${JSON.stringify(t.user)}  ${JSON.stringify(t.description)}${Object.keys(t.extension).length ? `  ${toJson(t.extension)}` : ''}\n`)
            for (const r of records) {
              const d = decode(r.data)
              const body = d === null ? 'deleted' : 'error' in d ? `UNREADABLE: ${d.error}` : `${d.className} ${toJson(d.state)}`
              process.stdout.write(`  oid 0x${idToHex(r.oid)} (${r.data?.length ?? 0} bytes) ${body}\n`)
            }
          }
        } finally {
          storage.close()
        }
        if (shown === 0 && (oid !== null || tid !== null)) {
          throw new CliError(`no ${tid !== null ? `transaction 0x${idToHex(tid)}` : ''}${tid !== null && oid !== null ? ' with ' : ''}${oid !== null ? `records of oid 0x${idToHex(oid)}` : ''} in ${spec}`, 1)
        }
      }),
    )
}

function decodeOrDeleted(data: Uint8Array | null): Record<string, unknown> {
  const d = decode(data)
  if (d === null) return { deleted: true }
  return d
}
