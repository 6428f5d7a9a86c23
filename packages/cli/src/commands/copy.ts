// wendelin copy SOURCE DESTINATION: copy a storage's transactions into another (ZODB's
// zodbconvert), with progress; into an earlier copy, only what came after it.

import type { Command } from 'commander'
import { copyTransactions, openStorage } from '@wendelin/zodb'

import { CliError, action, formatBytes, formatTid, openExisting, plainPathAsSqlite, progress } from './common.js'

export function register(cli: Command): void {
  cli
    .command('copy')
    .description('copy the transactions of a storage into another (created if it is a new SQLite file); into an earlier copy, only those after it')
    .argument('<source>', 'storage spec or SQLite file path to copy from')
    .argument('<destination>', 'SQLite file path or spec to copy into (sqlite: or memory:)')
    .action(
      action('copy', async (sourceSpec: string, destinationSpec: string) => {
        const source = await openExisting(sourceSpec, { readOnly: true })
        try {
          const spec = plainPathAsSqlite(destinationSpec)
          let destination
          try {
            destination = await openStorage(spec)
          } catch (error) {
            throw new CliError(`cannot open ${spec}: ${(error as Error).message.split('\n')[0]}`)
          }
          try {
            if (typeof destination.restore !== 'function') throw new CliError(`${spec}: this kind of storage cannot be copied into (copy into a SQLite file)`)
            const started = Date.now()
            const bar = progress('copying transactions', null)
            const copied = copyTransactions(source, destination, {
              onProgress: (p) => bar.update(p.transactions, `${formatBytes(p.bytes)}, at ${formatTid(p.tid)}`),
            })
            bar.stop()
            process.stdout.write(
              [
                `copied ${copied.transactions} transactions (${copied.records} records, ${formatBytes(copied.bytes)}) from ${source.spec} to ${destination.spec} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
                `last transaction: ${formatTid(destination.lastTransaction())}`,
                '',
              ].join('\n'),
            )
          } finally {
            destination.close()
          }
        } finally {
          source.close()
        }
      }),
    )
}
