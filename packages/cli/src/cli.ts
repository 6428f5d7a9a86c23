#!/usr/bin/env node
// The `wendelin` command. For now it only serves databases over the network:
//
//     WENDELIN_TOKEN=... wendelin serve --listen 127.0.0.1:8100 --storage main=sqlite:/srv/db.sqlite
//
// Clients then open `zeo://127.0.0.1:8100/main` with the same token.

import { readFileSync } from 'node:fs'

import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import { StorageServer } from '@wendelin/zeo'

import { plainPathAsSqlite } from './commands/common.js'
import { register as registerBench } from './commands/bench.js'
import { register as registerCopy } from './commands/copy.js'
import { register as registerDemo } from './commands/demo.js'
import { register as registerDump } from './commands/dump.js'
import { register as registerInfo } from './commands/info.js'
import { register as registerPack } from './commands/pack.js'
import { register as registerVerify } from './commands/verify.js'
import { openStorage, type Storage } from '@wendelin/zodb'

function collect(value: string, previous: string[]): string[] {
  return [...previous, value]
}

function positiveInt(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer')
  return n
}

export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(value)
  if (m === null) throw new InvalidArgumentError('expected HOST:PORT (e.g. 127.0.0.1:8100)')
  const port = Number(m[3])
  if (port > 65535) throw new InvalidArgumentError('port out of range')
  return { host: m[1] ?? m[2]!, port }
}

interface ServeOptions {
  listen: { host: string; port: number }
  storage: string[]
  readOnly: string[]
  tokenFile?: string
  tlsCert?: string
  tlsKey?: string
  tlsCa?: string
  tlsRequestCert?: boolean
  transactionTimeout?: number
  maxConnections?: number
  maxFrameBytes?: number
}

async function serve(options: ServeOptions): Promise<void> {
  let token: string | undefined
  if (options.tokenFile) token = readFileSync(options.tokenFile, 'utf8').split(/\r?\n/)[0]!.trim()
  else token = process.env.WENDELIN_TOKEN
  if (!token) throw new Error('no token: pass --token-file FILE or set WENDELIN_TOKEN (clients must present the same one)')
  if (options.storage.length === 0) throw new Error('nothing to serve: pass --storage NAME=SPEC (e.g. --storage main=sqlite:/srv/db.sqlite)')
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) throw new Error('TLS needs both --tls-cert and --tls-key')
  if (options.tlsCert === undefined && (options.tlsCa !== undefined || options.tlsRequestCert)) throw new Error('--tls-ca and --tls-request-cert need --tls-cert and --tls-key')
  const storages = new Map<string, Storage>()
  const readOnly = new Set(options.readOnly)
  try {
    for (const s of options.storage) {
      const eq = s.indexOf('=')
      if (eq <= 0) throw new Error(`--storage ${s}: expected NAME=SPEC`)
      const name = s.slice(0, eq)
      if (storages.has(name)) throw new Error(`--storage ${name} given twice`)
      const given = s.slice(eq + 1)
      const spec = given === '' ? given : plainPathAsSqlite(given) // (an empty spec is refused as such)
      storages.set(name, await openStorage(spec, readOnly.has(name) ? { readOnly: true } : {}))
    }
    for (const name of readOnly) if (!storages.has(name)) throw new Error(`--read-only ${name}: no such storage`)
  } catch (error) {
    for (const st of storages.values()) st.close()
    throw error
  }
  const server = new StorageServer({
    token,
    ...(options.tlsCert
      ? {
          tls: {
            cert: readFileSync(options.tlsCert),
            key: readFileSync(options.tlsKey!),
            ...(options.tlsCa ? { ca: readFileSync(options.tlsCa) } : {}),
            requestCert: options.tlsRequestCert ?? false,
          },
        }
      : {}),
    ...(options.transactionTimeout ? { transactionTimeout: options.transactionTimeout } : {}),
    ...(options.maxConnections ? { maxConnections: options.maxConnections } : {}),
    ...(options.maxFrameBytes ? { maxFrameBytes: options.maxFrameBytes } : {}),
  })
  for (const [name, storage] of storages) server.addStorage(name, storage, { readOnly: readOnly.has(name) })
  const address = await server.listen(options.listen.port, options.listen.host)
  const names = [...storages.keys()].map((n) => (readOnly.has(n) ? `${n} (read-only)` : n)).join(', ')
  const host = address.host.includes(':') ? `[${address.host}]` : address.host
  process.stdout.write(`wendelin: serving ${names} on ${options.tlsCert ? 'zeos' : 'zeo'}://${host}:${address.port}\n`)
  let stopping = false
  const stop = (signal: 'SIGTERM' | 'SIGINT') => {
    if (stopping) {
      // A second signal does not wait for the transactions in flight: they are aborted.
      process.stderr.write(`wendelin: ${signal} again: exiting now\n`)
      process.exit(128 + (signal === 'SIGINT' ? 2 : 15))
    }
    stopping = true
    process.stdout.write(`wendelin: ${signal}: finishing the transaction in flight and closing\n`)
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`wendelin: ${(error as Error).message}\n`)
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}

export function program(): Command {
  // Bad arguments: one line, `wendelin CMD: what is wrong`, status 2 (exitOverride is inherited by
  // the subcommands; their output is configured below, once they exist).
  const cli = new Command('wendelin').description('A transactional object database and out-of-core arrays').exitOverride()
  cli
    .command('serve')
    .description('serve databases to network clients (zeo://HOST:PORT/NAME)')
    .addOption(new Option('--listen <host:port>', 'address to listen on (port 0: any free port)').argParser(parseListen).default({ host: '127.0.0.1', port: 8100 }, '127.0.0.1:8100'))
    .option('--storage <name=spec>', 'serve the storage SPEC (sqlite:/path, memory:) under NAME; repeatable', collect, [])
    .option('--read-only <name>', 'serve storage NAME read-only; repeatable', collect, [])
    .option('--token-file <file>', "file whose first line is the clients' shared secret (default: $WENDELIN_TOKEN)")
    .option('--tls-cert <file>', 'serve TLS with this certificate (PEM)')
    .option('--tls-key <file>', 'private key of --tls-cert (PEM)')
    .option('--tls-ca <file>', 'CA certificates for verifying client certificates (PEM)')
    .option('--tls-request-cert', 'ask clients for a certificate')
    .option('--transaction-timeout <ms>', 'abort a client that holds the commit lock longer (default 30000)', positiveInt)
    .option('--max-connections <n>', 'simultaneous connections (default 256)', positiveInt)
    .option('--max-frame-bytes <n>', 'largest message accepted (default 64 MiB)', positiveInt)
    .action(async (options: ServeOptions) => {
      try {
        await serve(options)
      } catch (error) {
        process.stderr.write(`wendelin serve: ${(error as Error).message}\n`)
        process.exit(2)
      }
    })
  registerInfo(cli)
  registerDump(cli)
  registerPack(cli)
  registerCopy(cli)
  registerVerify(cli)
  registerBench(cli)
  registerDemo(cli)
  for (const cmd of [cli, ...cli.commands]) {
    const prefix = cmd === cli ? 'wendelin' : `wendelin ${cmd.name()}`
    cmd.configureOutput({ outputError: (str, write) => write(`${prefix}: ${str.replace(/^error: /, '')}`) })
  }
  return cli
}

// Whoever reads our output may go away (`wendelin dump … | head`, `wendelin serve | tee log` and
// Ctrl-C): that is no reason to crash, least of all in the middle of a pack or a shutdown.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error
  })
}

try {
  await program().parseAsync(process.argv)
} catch (error) {
  if (!(error instanceof CommanderError)) throw error
  process.exit(error.exitCode === 0 ? 0 : 2)
}
