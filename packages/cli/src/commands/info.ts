// wendelin info SPEC: what kind of storage, how big, how many objects and transactions, and
// the last transaction.

import type { Command } from 'commander'

import { action, formatBytes, formatTid, openExisting, progress } from './common.js'

export function register(cli: Command): void {
  cli
    .command('info')
    .description('show a storage: kind, size, objects, transactions, last transaction')
    .argument('<spec>', 'storage spec (sqlite:/path/db.sqlite, zeo://host:port/name) or a SQLite file path')
    .option('--json', 'print one JSON object')
    .action(
      action('info', async (spec: string, options: { json?: boolean }) => {
        const storage = await openExisting(spec, { readOnly: true })
        try {
          const last = storage.lastTransaction()
          const bar = progress('counting transactions', null)
          let transactions = 0
          for (const _ of storage.iterator()) bar.update(++transactions)
          bar.stop()
          const facts = {
            kind: storage.constructor.name,
            spec: storage.spec,
            name: storage.getName(),
            readOnly: storage.isReadOnly(),
            sizeBytes: storage.getSize(),
            objects: storage.len(),
            transactions,
            lastTransaction: last === 0n ? null : `0x${last.toString(16).padStart(16, '0')}`,
            lastTransactionTime: last === 0n ? null : formatTid(last).replace(/^.*\((.*)\)$/, '$1'),
          }
          if (options.json) {
            process.stdout.write(`${JSON.stringify(facts)}\n`)
            return
          }
          process.stdout.write(
            [
              `storage:      ${facts.kind} ${facts.spec}`,
              `size:         ${formatBytes(facts.sizeBytes)}`,
              `objects:      ${facts.objects}`,
              `transactions: ${facts.transactions}`,
              `last:         ${formatTid(last)}`,
              '',
            ].join('\n'),
          )
        } finally {
          storage.close()
        }
      }),
    )
}
