// wendelin bench: run the benchmark suite (bench/*.bench.js) and rewrite bench/RESULTS.md.

import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import type { Command } from 'commander'

import { CliError, action } from './common.js'

/** The repository's bench/ folder: packages/cli/dist/commands → ../../../../bench. */
const benchDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../bench')

export function register(cli: Command): void {
  cli
    .command('bench')
    .description('run the benchmarks (bench/*.bench.js) and rewrite bench/RESULTS.md')
    .argument('[names...]', 'only the benchmarks whose file names contain one of these')
    .action(
      action('bench', async (names: string[]) => {
        const runner = path.join(benchDir, 'run.js')
        if (!existsSync(runner)) throw new CliError(`no benchmark suite here (${runner} is missing): run it from a clone of the repository`)
        const r = spawnSync(process.execPath, [runner, ...names], { stdio: 'inherit' })
        if (r.error) throw new CliError(`cannot run ${runner}: ${r.error.message}`)
        return r.status ?? 1
      }),
    )
}
