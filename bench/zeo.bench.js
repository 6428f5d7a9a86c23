// W-OBJ through the storage server (shared/BENCHMARKS.md, figures 1-6 and the server's own):
// the object workload through a ClientStorage whose server (a child process) keeps the data in
// SQLite, beside the same workload on a local SQLiteStorage in the same run; commits per second
// from 4 client processes (beside 4 processes sharing one SQLite file directly) and the CPU time
// they and the server spend per commit; the round trip of one load (beside a local SQLite
// load), in a new client and once it is warm; and W-ARR's cold read of a 1 GiB ZBigArray in a
// fresh process through the server (beside the same read of the local file).
// Usage: node bench/zeo.bench.js [--objects N] [--only=objects,commits,latency,array] [--no-write] [--json FILE (the rows)]
import { fork } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { ZBigArray } from '@wendelin/bigarray'
import { RAM } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { DB, MAX_TID, SQLiteStorage, openStorage } from '@wendelin/zodb'
import { ClientStorage, StorageServer } from '@wendelin/zeo'
import { IOBTree } from '@wendelin/btrees'

import { printRows, secondsSince, summarize, updateResults } from './lib/harness.js'
import { makeItem, runObjectWorkload, settle } from './lib/wobj-workload.js'

const self = fileURLToPath(import.meta.url)
const args = process.argv.slice(2)
const role = args[0]?.startsWith('--role=') ? args[0].slice('--role='.length) : 'main'
const TOKEN = 'bench-token'
const MiB = 1024 * 1024
/** W-ARR's array: float64, 2 MiB blocks, 1 GiB. */
const ARRAY_BLOCK = 2 * MiB
const ARRAY_BYTES = 1024 * MiB

/**
 * CPU time so far of this process's threads, in ms, by thread id (Linux: /proc's schedstat), or
 * null where /proc cannot tell. The main thread's id is the pid.
 */
function threadCpu() {
  try {
    const byThread = new Map()
    for (const tid of readdirSync('/proc/self/task')) {
      try {
        byThread.set(tid, Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e6)
      } catch {
        // the thread ended between the listing and the read
      }
    }
    return byThread
  } catch {
    return null
  }
}

/**
 * Where a process's CPU time between two `threadCpu()` went, in ms: its main thread; the threads
 * that did not exist yet at `before` (taken before the storage was opened: a network client's I/O
 * worker); and the threads Node started with the process (V8's compiler and GC threads, which in
 * these fresh 250-commit processes take a large share: compiling the commit path's hot code).
 */
function cpuByThreadKind(before, start, end) {
  const split = { main: NaN, storage: NaN, node: NaN }
  if (before === null || start === null || end === null) return split
  split.main = 0
  split.storage = 0
  split.node = 0
  for (const [tid, ms] of end) {
    const spent = ms - (start.get(tid) ?? 0)
    if (tid === String(process.pid)) split.main += spent
    else if (before.has(tid)) split.node += spent
    else split.storage += spent
  }
  return split
}

// --- child roles ---------------------------------------------------------------------------------

if (role === 'server') {
  // argv: --role=server; storages are added over IPC: { add: name, spec }
  // ($ZEO_BENCH_SERVER_OPTIONS: JSON of StorageServer options, for comparing them)
  const server = new StorageServer({ token: TOKEN, ...JSON.parse(process.env.ZEO_BENCH_SERVER_OPTIONS ?? '{}') })
  const { port } = await server.listen(0, '127.0.0.1')
  process.on('message', async (m) => {
    if (m.cpu) {
      const u = process.cpuUsage()
      process.send({ cpu: (u.user + u.system) / 1000, mainCpu: threadCpu()?.get(String(process.pid)) ?? NaN }) // ms
    }
    if (m.add) {
      server.addStorage(m.add, await openStorage(m.spec))
      process.send({ added: m.add })
    }
  })
  process.on('disconnect', () => server.close().then(() => process.exit(0)))
  process.send({ port })
} else if (role === 'array-reader') {
  // argv: --role=array-reader SPEC: sum root.a in 64 MiB views under W-ARR's RAM limit, report MB/s
  process.env.WENDELIN_TOKEN = TOKEN // the loader workers open their own client from the spec
  const db = new DB(await openStorage(args[1]))
  const conn = db.open({ transactionManager: new TransactionManager() })
  const A = conn.root.a
  A.open({ ram: new RAM({ pageSize: ARRAY_BLOCK, limit: 512 * MiB }) })
  const t0 = process.hrtime.bigint()
  let sum = 0
  for (const c of A.chunks({ bytes: 64 * MiB })) {
    const { data, offset, size } = c.array
    for (let i = offset, end = offset + size; i < end; i++) sum += data[i]
  }
  const mbs = (A.size * 8) / 1e6 / secondsSince(t0)
  const n = A.size
  if (sum !== (0.5 * n * (n - 1)) / 2) throw new Error(`array-reader: sum ${sum}`)
  A.close()
  db.close()
  process.send({ mbs })
} else if (role === 'committer') {
  // argv: --role=committer SPEC K TXNS: make tree K, wait for 'go', commit TXNS transactions of 10 new objects
  const [spec, k, txns] = args.slice(1)
  process.env.WENDELIN_TOKEN = TOKEN
  const threadsBefore = threadCpu()
  const storage = await openStorage(spec)
  const db = new DB(storage)
  const tm = new TransactionManager({ explicit: true })
  const conn = db.open({ transactionManager: tm })
  for (;;) {
    try {
      tm.begin()
      conn.root[`tree${k}`] = new IOBTree()
      tm.commit()
      break
    } catch (error) {
      tm.abort()
      if (error.name !== 'ConflictError') throw error
    }
  }
  process.send({ ready: true })
  process.once('message', () => {
    const t0 = process.hrtime.bigint()
    const cpu0 = process.cpuUsage()
    const threads0 = threadCpu()
    const tree = conn.root[`tree${k}`]
    let n = 0
    for (let t = 0; t < Number(txns); t++) {
      tm.begin()
      for (let j = 0; j < 10; j++) tree.set(n, makeItem(n++, null))
      tm.commit()
    }
    const cpu = process.cpuUsage(cpu0)
    const threads = cpuByThreadKind(threadsBefore, threads0, threadCpu())
    process.send({ seconds: secondsSince(t0), cpuMs: (cpu.user + cpu.system) / 1000, threads })
    db.close()
    process.exit(0)
  })
}

if (role !== 'main') {
  // children stay alive on their IPC channel
} else {
  await main()
}

// --- the benchmark ---------------------------------------------------------------------------------

async function main() {
  const { ZEO_BENCH_OBJECTS } = process.env
  const N = Number(args[args.indexOf('--objects') + 1] || 0) || Number(ZEO_BENCH_OBJECTS || 0) || 100_000
  const RUNS = 3
  const write = !args.includes('--no-write')
  const scratch = process.env.WENDELIN_BENCH_DIR ?? tmpdir()
  const dirs = []
  const fileIn = () => {
    const d = mkdtempSync(path.join(scratch, 'zeo-bench-'))
    dirs.push(d)
    return path.join(d, 'db.sqlite')
  }

  const server = fork(self, ['--role=server'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const port = await new Promise((resolve) => server.once('message', (m) => resolve(m.port)))
  let nextName = 1
  const serve = async (spec) => {
    const name = `b${nextName++}`
    const added = new Promise((resolve) => server.once('message', resolve))
    server.send({ add: name, spec })
    await added
    return name
  }
  const client = (name, options = {}) => new ClientStorage({ host: '127.0.0.1', port, storage: name, token: TOKEN, ...options })

  /** The server process's CPU time so far, and its main thread's, in ms. */
  const serverCpu = () =>
    new Promise((resolve) => {
      const onMessage = (m) => {
        if (m.cpu === undefined) return
        server.off('message', onMessage)
        resolve(m)
      }
      server.on('message', onMessage)
      server.send({ cpu: true })
    })

  /**
   * Figure 6: 4 processes, each 250 transactions of 10 new objects in its own tree; total commits/s,
   * and the CPU time per commit of the 4 processes and (through the server) the server's.
   */
  async function runCommitters(spec, viaServer) {
    const procs = Array.from({ length: 4 }, (_, k) => fork(self, ['--role=committer', spec, String(k), '250'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
    for (const p of procs) {
      p.once('exit', (code) => {
        if (code === 0) return
        console.error(`a committer process exited with ${code}`)
        process.exit(1)
      })
    }
    await Promise.all(procs.map((p) => new Promise((resolve) => p.once('message', resolve))))
    const s0 = viaServer ? await serverCpu() : { cpu: 0, mainCpu: 0 }
    const t0 = process.hrtime.bigint()
    const done = Promise.all(procs.map((p) => new Promise((resolve) => p.once('message', resolve))))
    for (const p of procs) p.send('go')
    const results = await done
    const seconds = secondsSince(t0)
    const s1 = viaServer ? await serverCpu() : { cpu: 0, mainCpu: 0 }
    await Promise.all(procs.map((p) => (p.exitCode !== null ? null : new Promise((resolve) => p.once('exit', resolve)))))
    const clientCpu = results.reduce((sum, r) => sum + r.cpuMs, 0)
    const clientThreads = (kind) => results.reduce((sum, r) => sum + r.threads[kind], 0) / 1000
    // (per commit: 1,000 commits, so ms in all / 1000)
    return {
      rate: 1000 / seconds,
      cpu: (clientCpu + s1.cpu - s0.cpu) / 1000,
      serverCpu: (s1.cpu - s0.cpu) / 1000,
      clientMainCpu: clientThreads('main'),
      clientStorageThreadsCpu: clientThreads('storage'),
      clientNodeThreadsCpu: clientThreads('node'),
      serverMainCpu: (s1.mainCpu - s0.mainCpu) / 1000,
    }
  }

  /** Round trip of one load: the same object at MAX_TID (never from the cache), µs per load. */
  function loadLatency(storage, oid, n = 5000, warmup = 500) {
    for (let i = 0; i < warmup; i++) storage.loadBefore(oid, MAX_TID)
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) storage.loadBefore(oid, MAX_TID)
    return (secondsSince(t0) * 1e6) / n
  }

  const rows = []
  try {
    const onlyArg = args.find((a) => a.startsWith('--only='))
    const only = onlyArg ? onlyArg.slice('--only='.length).split(',') : ['objects', 'commits', 'latency', 'array']
    console.log(`W-OBJ through the server: ${N.toLocaleString('en-US')} objects, ${RUNS} runs`)
    if (only.includes('objects')) {
    const local = []
    const remote = []
    for (let run = 0; run < RUNS; run++) {
      const file = fileIn()
      local.push(runObjectWorkload(N, () => new SQLiteStorage(file), () => new SQLiteStorage(file)))
      await settle()
      const name = await serve(`sqlite:${fileIn()}`)
      remote.push(runObjectWorkload(N, () => client(name), () => client(name)))
      await settle()
      console.log(`  run ${run + 1}: local cold ${Math.round(local.at(-1).cold)}/s, server cold ${Math.round(remote.at(-1).cold)}/s`)
    }
    const m = (f) => summarize(remote.map(f))
    const b = (f) => summarize(local.map(f))
    const wl = 'W-OBJ/ClientStorage (server, SQLite)'
    const base = 'local SQLiteStorage'
    rows.push(
      { workload: wl, figure: '1 populate', value: m((x) => x.populate), unit: 'objects/s', baseline: base, baselineValue: b((x) => x.populate) },
      { workload: wl, figure: '2 cold read', value: m((x) => x.cold), unit: 'objects/s', baseline: base, baselineValue: b((x) => x.cold) },
      { workload: wl, figure: '3 hot read', value: m((x) => x.hot), unit: 'objects/s', baseline: base, baselineValue: b((x) => x.hot) },
      { workload: wl, figure: '4 update', value: m((x) => x.update), unit: 'objects/s', baseline: base, baselineValue: b((x) => x.update) },
      { workload: wl, figure: '5 small commits', value: m((x) => x.small), unit: 'commits/s', baseline: base, baselineValue: b((x) => x.small) },
    )
    }
    const wl = 'W-OBJ/ClientStorage (server, SQLite)'

    for (const durability of only.includes('commits') ? ['full', 'normal'] : []) {
      const viaServer = []
      const direct = []
      for (let run = 0; run < RUNS; run++) {
        const q = durability === 'full' ? '' : '?durability=normal'
        const name = await serve(`sqlite:${fileIn()}${q}`)
        viaServer.push(await runCommitters(`zeo://127.0.0.1:${port}/${name}`, true))
        // Create the file first: four processes creating one new SQLite file at once race (see README).
        const shared = fileIn()
        new SQLiteStorage(shared).close()
        direct.push(await runCommitters(`sqlite:${shared}${q}`, false))
        const [v, d] = [viaServer.at(-1), direct.at(-1)]
        console.log(
          `  4 committers (${durability}): server ${Math.round(v.rate)}/s (CPU per commit: clients ${(v.cpu - v.serverCpu).toFixed(2)} ms: ` +
            `main threads ${v.clientMainCpu.toFixed(2)}, I/O workers ${v.clientStorageThreadsCpu.toFixed(2)}, V8's threads ${v.clientNodeThreadsCpu.toFixed(2)}; ` +
            `server ${v.serverCpu.toFixed(2)} ms, main thread ${v.serverMainCpu.toFixed(2)}), ` +
            `shared SQLite file ${Math.round(d.rate)}/s (CPU per commit ${d.cpu.toFixed(2)} ms: main threads ${d.clientMainCpu.toFixed(2)}, ` +
            `storage's threads ${d.clientStorageThreadsCpu.toFixed(2)}, V8's threads ${d.clientNodeThreadsCpu.toFixed(2)})`,
        )
      }
      rows.push(
        {
          workload: wl,
          figure: `6 commits from 4 processes (SQLite ${durability})`,
          value: summarize(viaServer.map((r) => r.rate)),
          unit: 'commits/s',
          baseline: `4 processes on one SQLite file (${durability})`,
          baselineValue: summarize(direct.map((r) => r.rate)),
        },
        {
          workload: wl,
          figure: `6 CPU per commit, 4 processes and the server (SQLite ${durability})`,
          value: summarize(viaServer.map((r) => r.cpu)),
          unit: 'ms',
          baseline: `4 processes on one SQLite file (${durability})`,
          baselineValue: summarize(direct.map((r) => r.cpu)),
        },
      )
    }

    const latRemote = []
    const latWarm = []
    const latLocal = []
    for (let run = 0; run < (only.includes('latency') ? RUNS : 0); run++) {
      const file = fileIn()
      const s = new SQLiteStorage(file)
      const db = new DB(s)
      db.close()
      const name = await serve(`sqlite:${file}`)
      const c = client(name)
      latRemote.push(loadLatency(c, 0n))
      // The same client once warm: V8 compiles its new I/O worker's code over the first thousands
      // of round trips, which are slower meanwhile.
      latWarm.push(loadLatency(c, 0n, 5000, 5000))
      c.close()
      const l = new SQLiteStorage(file)
      latLocal.push(loadLatency(l, 0n))
      l.close()
    }
    if (latRemote.length > 0) {
      rows.push(
        { workload: wl, figure: 'load round trip', value: summarize(latRemote), unit: 'µs', baseline: 'local SQLiteStorage load', baselineValue: summarize(latLocal) },
        { workload: wl, figure: 'load round trip, warm client (after 10,500)', value: summarize(latWarm), unit: 'µs', baseline: 'local SQLiteStorage load', baselineValue: summarize(latLocal) },
      )
    }

    if (only.includes('array')) {
      // W-ARR's array, written here into a local file the server then serves.
      const file = fileIn()
      {
        const db = new DB(new SQLiteStorage(file))
        const tm = new TransactionManager()
        const conn = db.open({ transactionManager: tm })
        conn.root.a = new ZBigArray([ARRAY_BYTES / 8], 'float64', { blksize: ARRAY_BLOCK, format: 'ZBlk0' })
        tm.commit()
        const ram = new RAM({ pageSize: ARRAY_BLOCK, limit: 512 * MiB })
        const A = conn.root.a
        A.open({ ram })
        for (const c of A.chunks({ bytes: 64 * MiB })) {
          const { data, offset, size } = c.array
          for (let i = 0; i < size; i++) data[offset + i] = (c.start + i) * 0.5
          tm.commit()
        }
        A.close()
        db.close()
        ram.close()
      }
      const name = await serve(`sqlite:${file}`)
      const readIn = (spec) =>
        new Promise((resolve, reject) => {
          // --import: the loader workers must know the zeo scheme to reopen the storage.
          const child = fork(self, ['--role=array-reader', spec], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: ['--import', '@wendelin/zeo'] })
          child.once('message', (m) => resolve(m.mbs))
          child.once('exit', (code) => code !== 0 && reject(new Error(`array-reader exited with ${code}`)))
        })
      const viaServer = []
      const local = []
      for (let run = 0; run < RUNS; run++) {
        local.push(await readIn(`sqlite:${file}`))
        viaServer.push(await readIn(`zeo://127.0.0.1:${port}/${name}`))
        console.log(`  run ${run + 1}: ZBigArray cold read through the server ${Math.round(viaServer.at(-1))} MB/s, local ${Math.round(local.at(-1))} MB/s`)
      }
      rows.push({
        workload: 'W-ARR/ClientStorage (server, SQLite)',
        figure: 'cold read: sum in 64 MiB chunks, fresh process, 1 GiB ZBlk0, RAM limit 512 MiB',
        value: summarize(viaServer),
        unit: 'MB/s',
        baseline: 'the same read of the local SQLite file',
        baselineValue: summarize(local),
      })
    }
  } finally {
    server.disconnect()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  }
  printRows(rows)
  const json = args.indexOf('--json')
  if (json >= 0) writeFileSync(args[json + 1], JSON.stringify(rows, null, 1))
  if (write) updateResults(rows)
}
