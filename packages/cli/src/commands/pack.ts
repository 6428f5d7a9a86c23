// wendelin pack SPEC: remove old revisions and unreachable objects, with progress and a summary.

import type { Command } from 'commander'
import { tidFromDate } from '@wendelin/zodb'

import { CliError, action, formatBytes, formatTid, openExisting, progress } from './common.js'

interface PackOptions {
  days: string
  gc: boolean
}

/** Storages whose pack reports progress (SQLiteStorage). */
interface ProgressPack {
  pack(t: bigint, gc: boolean, options: { onProgress: (p: { phase: string; done: number }) => void }): void
}

export function register(cli: Command): void {
  cli
    .command('pack')
    .description('pack a storage: drop revisions older than --days days and unreachable objects')
    .argument('<spec>', 'storage spec or SQLite file path')
    .option('--days <n>', 'keep the history of the last N days (default 0: keep only the current state)', '0')
    .option('--no-gc', 'keep unreachable objects')
    .action(
      action('pack', async (spec: string, options: PackOptions) => {
        const days = Number(options.days)
        if (!Number.isFinite(days) || days < 0) throw new CliError(`--days must be a number of days ≥ 0, got ${JSON.stringify(options.days)}`)
        const storage = await openExisting(spec)
        try {
          const before = { size: storage.getSize(), objects: storage.len() }
          const packTid = tidFromDate(new Date(Date.now() - days * 86_400_000))
          const started = Date.now()
          const bar = progress('packing', null)
          ;(storage as unknown as ProgressPack).pack(packTid, options.gc, { onProgress: (p) => bar.update(p.done, p.phase) })
          bar.stop()
          const after = { size: storage.getSize(), objects: storage.len() }
          process.stdout.write(
            [
              `packed ${storage.spec} to ${formatTid(packTid)}${options.gc ? ', unreachable objects removed' : ''} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
              `objects: ${before.objects} → ${after.objects}`,
              `size:    ${formatBytes(before.size)} → ${formatBytes(after.size)} (SQLite reuses freed pages; the file shrinks with VACUUM, or PRAGMA incremental_vacuum where it keeps a pointer map)`,
              '',
            ].join('\n'),
          )
        } finally {
          storage.close()
        }
      }),
    )
}
