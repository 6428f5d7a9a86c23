// The READMEs are a contract: their examples and the facts they state are checked here against
// the built packages, so that the two cannot drift apart.
//
// - Every ```ts block type-checks against the packages' declarations. The blocks are fragments
//   (`conn`, `dataManager`, `someTid` come from the prose), so a name they never declare or
//   import is left alone; every other error — an import the package does not export, a method
//   or option that does not exist, a wrong argument — fails the test.
// - A ```ts block after `<!-- test: run -->` runs as written, in a fresh directory, with the
//   blocks after `<!-- test: continue -->` that follow it (each in a scope of its own, after the
//   imports of all): it must end with status 0.
// - Every `wendelin CMD --option` in a ```sh block names a subcommand and options that exist.
// - The SQLite file format table of the zodb README is the schema SQLiteStorage creates, and
//   the zeo: and sqlite: spec options it and the zeo README list are those the parsers take.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import Database from 'better-sqlite3'
import { expect } from 'chai'
import ts from 'typescript'
import { SQLITE_SCHEMA_VERSION, SQLiteStorage, openStorage } from '@wendelin/zodb'
import { DEFAULT_MAX_FRAME, PROTOCOL_VERSION, parseZeoSpec } from '@wendelin/zeo'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..', '..', '..')
const wendelin = path.join(root, 'packages', 'cli', 'bin', 'wendelin.js')
const scratch = existsSync('/dev/shm') ? '/dev/shm' : tmpdir()

interface Block {
  readme: string
  /** 1-based line of the block's first line of code. */
  line: number
  lang: string
  /** The HTML comment right before the opening fence, if any (`test: run`). */
  marker: string | null
  code: string
}

const readmes = ['README.md', ...readdirSync(path.join(root, 'packages')).map((p) => path.join('packages', p, 'README.md'))].filter((f) => existsSync(path.join(root, f)))

function blocksOf(readme: string): Block[] {
  const lines = readFileSync(path.join(root, readme), 'utf8').split('\n')
  const out: Block[] = []
  let open: Omit<Block, 'code'> | null = null
  let code: string[] = []
  lines.forEach((l, i) => {
    if (open === null) {
      const m = /^```(\S*)\s*$/.exec(l)
      if (m === null) return
      const before = lines.slice(0, i).reverse().find((p) => p.trim() !== '')
      const marker = before === undefined ? null : (/^<!--\s*(.*?)\s*-->$/.exec(before.trim())?.[1] ?? null)
      open = { readme, line: i + 2, lang: m[1]!, marker }
      code = []
    } else if (/^```\s*$/.test(l)) {
      out.push({ ...open, code: code.join('\n') })
      open = null
    } else code.push(l)
  })
  return out
}

const blocks = readmes.flatMap(blocksOf)
const where = (b: Block, lineInBlock = 0) => `${b.readme}:${b.line + lineInBlock}`

describe('README examples and facts', function () {
  this.timeout(180_000)

  it('finds the READMEs and their examples', () => {
    expect(readmes).to.include('README.md')
    expect(readmes.length).to.be.at.least(7)
    expect(blocks.filter((b) => b.lang === 'ts').length).to.be.at.least(10)
    expect(blocks.filter((b) => b.marker === 'test: run').length).to.be.at.least(1)
  })

  it('every ts block type-checks against the packages (names the fragment never declares aside)', () => {
    const tsBlocks = blocks.filter((b) => b.lang === 'ts')
    // Virtual files in the repository's root, so that '@wendelin/…' and 'ndarray-ops' resolve as
    // they do for a user of the repository, and as ES modules (top-level await).
    const files = new Map(tsBlocks.map((b, i) => [path.join(root, `__readme_example_${i}.ts`), { block: b, text: `${b.code}\nexport {}\n` }]))
    const options: ts.CompilerOptions = {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      lib: ['lib.es2023.d.ts', 'lib.esnext.disposable.d.ts'],
      types: ['node'],
      strict: true,
      noEmit: true,
      skipLibCheck: true,
    }
    const host = ts.createCompilerHost(options)
    const getSourceFile = host.getSourceFile.bind(host)
    const fileExists = host.fileExists.bind(host)
    const readFile = host.readFile.bind(host)
    host.getSourceFile = (name, version, ...rest) => {
      const f = files.get(name)
      return f ? ts.createSourceFile(name, f.text, version) : getSourceFile(name, version, ...rest)
    }
    host.fileExists = (name) => files.has(name) || fileExists(name)
    host.readFile = (name) => files.get(name)?.text ?? readFile(name)
    const program = ts.createProgram([...files.keys()], options, host)
    // What a fragment's placeholders cause: a name never declared (2304, 2552), a parameter of a
    // callback given to such a name (implicit any: 7005, 7006, 7031, 7034), a shorthand property
    // of an undeclared value (18004), a library used without its import (2686).
    const placeholders = new Set([2304, 2552, 7005, 7006, 7031, 7034, 18004, 2686])
    const problems: string[] = []
    for (const d of ts.getPreEmitDiagnostics(program)) {
      if (placeholders.has(d.code)) continue
      const f = d.file ? files.get(d.file.fileName) : undefined
      const at = f && d.file && d.start !== undefined ? where(f.block, d.file.getLineAndCharacterOfPosition(d.start).line) : (d.file?.fileName ?? 'options')
      problems.push(`${at}: TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`)
    }
    expect(problems, problems.join('\n')).to.deep.equal([])
  })

  for (const [i, first] of blocks.entries()) {
    if (first.marker !== 'test: run') continue
    const group = [first]
    for (const b of blocks.slice(i + 1)) {
      if (b.readme !== first.readme || b.marker !== 'test: continue') break
      group.push(b)
    }
    it(`runs as written: ${where(first)}${group.length > 1 ? ` and the ${group.length - 1} block(s) continuing it` : ''}`, () => {
      const imports = new Set<string>()
      const bodies: string[] = []
      for (const b of group) {
        const body: string[] = []
        for (const l of b.code.split('\n')) (/^import\s/.test(l) ? imports.add(l) : body.push(l))
        bodies.push(body.join('\n'))
      }
      const source = [...imports, bodies[0], ...bodies.slice(1).map((b) => `{\n${b}\n}`)].join('\n')
      const js = ts.transpileModule(source, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } }).outputText
      // Next to this test, so that its imports resolve from the repository; run in a fresh folder.
      const file = path.join(here, `.readme-example-${process.pid}-${i}.mjs`)
      const cwd = mkdtempSync(path.join(scratch, 'wendelin-readme-'))
      writeFileSync(file, js)
      try {
        const r = spawnSync(process.execPath, [file], { cwd, encoding: 'utf8', timeout: 150_000 })
        expect(r.status, `${where(first)} exited with ${r.status} (${r.signal ?? 'no signal'}):\n${r.stderr}`).to.equal(0)
      } finally {
        rmSync(file, { force: true })
        rmSync(cwd, { recursive: true, force: true })
      }
    })
  }

  it('every `wendelin CMD --option` of a sh block exists', () => {
    const help = new Map<string, string>()
    const helpOf = (cmd: string): string => {
      let text = help.get(cmd)
      if (text === undefined) {
        const r = spawnSync(process.execPath, [wendelin, cmd, '--help'], { encoding: 'utf8' })
        text = r.status === 0 ? r.stdout : ''
        help.set(cmd, text)
      }
      return text
    }
    const problems: string[] = []
    let seen = 0
    for (const b of blocks.filter((b) => b.lang === 'sh')) {
      // Continued lines (a trailing backslash) are one command.
      const lines = b.code.replace(/\\\n/g, ' ').split('\n')
      for (const line of lines) {
        const m = /(?:^|\s)wendelin\s+([a-z]+)(.*)$/.exec(line.replace(/#.*$/, ''))
        if (m === null) continue
        seen++
        const [, cmd, rest] = m as unknown as [string, string, string]
        const text = helpOf(cmd)
        if (text === '') {
          problems.push(`${where(b)}: no subcommand ${cmd}`)
          continue
        }
        for (const opt of rest.match(/--[a-z][a-z-]*/g) ?? []) {
          if (!new RegExp(`(^|[\\s,])${opt}([\\s,=]|$)`, 'm').test(text)) problems.push(`${where(b)}: wendelin ${cmd} has no option ${opt}`)
        }
      }
    }
    expect(seen).to.be.at.least(10)
    expect(problems, problems.join('\n')).to.deep.equal([])
  })

  it("zodb's SQLite file format table is the schema SQLiteStorage creates", () => {
    const readme = readFileSync(path.join(root, 'packages', 'zodb', 'README.md'), 'utf8')
    const version = /SQLite file format, schema version (\d+)/.exec(readme)
    expect(Number(version?.[1]), 'the schema version the README names').to.equal(SQLITE_SCHEMA_VERSION)
    expect(readme).to.include(`\`schema_version\` = ${SQLITE_SCHEMA_VERSION}`)
    const dir = mkdtempSync(path.join(scratch, 'wendelin-readme-'))
    try {
      const file = path.join(dir, 'db.sqlite')
      new SQLiteStorage(file).close()
      const db = new Database(file, { readonly: true })
      try {
        const rows = [...readme.matchAll(/^\| (index )?`(\w+)` \| `([^`]+)`/gm)]
        expect(rows.length, 'rows of the table').to.be.at.least(5)
        const documented = new Set<string>()
        for (const [, isIndex, name, columns] of rows as unknown as [string, string | undefined, string, string][]) {
          documented.add(name)
          const sql = db.prepare('SELECT type, sql FROM sqlite_master WHERE name = ?').get(name) as { type: string; sql: string } | undefined
          expect(sql, `${name} exists`).to.not.equal(undefined)
          if (isIndex) {
            expect(sql!.type).to.equal('index')
            const cols = (db.pragma(`index_info(${name})`) as { name: string }[]).map((c) => c.name)
            expect(`(${cols.join(', ')})`, name).to.equal(columns)
          } else {
            expect(sql!.type).to.equal('table')
            expect(sql!.sql, `${name} is STRICT (the README says all tables are)`).to.match(/\)\s*STRICT$/)
            const actual = (db.pragma(`table_info(${name})`) as { name: string; type: string; pk: number }[]).map((c) => `${c.name} ${c.type}`)
            const stated = columns.split(', ').map((c) => c.split(' ').slice(0, 2).join(' '))
            expect(stated, name).to.deep.equal(actual)
          }
        }
        const all = (db.prepare("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").pluck().all() as string[]).sort()
        expect(all, 'every table and index is in the README').to.deep.equal([...documented].sort())
        const meta = new Map(db.prepare('SELECT key, value FROM wendelin_meta').raw().all() as [string, unknown][])
        expect(readme).to.include(`\`application\` = \`${String(meta.get('application'))}\``)
        for (const key of meta.keys()) expect(readme, `wendelin_meta's ${key}`).to.include(`\`${key}\``)
      } finally {
        db.close()
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('every option of the zeo: and sqlite: spec syntax the READMEs give is one the parsers take', async () => {
    const zeo = readFileSync(path.join(root, 'packages', 'zeo', 'README.md'), 'utf8')
    const syntax = /Spec: `zeo:\/\/HOST:PORT\/NAME\[\?([^\]`]+)\]`/.exec(zeo)
    expect(syntax, 'the zeo README gives the spec syntax').to.not.equal(null)
    const zeoOptions = syntax![1]!.split('&').map((kv) => kv.split('=')[0]!)
    expect(zeoOptions.length).to.be.at.least(5)
    for (const k of zeoOptions) expect(() => parseZeoSpec(`zeo://127.0.0.1:8100/main?${k}=1`), `zeo spec option ${k}`).to.not.throw()
    const zodb = readFileSync(path.join(root, 'packages', 'zodb', 'README.md'), 'utf8')
    const from = zodb.indexOf('Options: `durability=')
    expect(from, 'the zodb README lists the sqlite: options').to.be.above(0)
    const list = zodb.slice(from, zodb.indexOf('\n\n', from))
    const sqliteOptions = [...list.matchAll(/`(\w+)=([^`]+)`/g)].map((m) => [m[1]!, m[2]!.split('|')[0]!] as const)
    expect(sqliteOptions.map(([k]) => k)).to.include.members(['durability', 'readonly', 'busyTimeout', 'pageSize', 'mmapSize', 'autoVacuum', 'blobExtension'])
    const dir = mkdtempSync(path.join(scratch, 'wendelin-readme-'))
    try {
      for (const [k, example] of sqliteOptions) {
        const value = { ms: '1000', bytes: k === 'pageSize' ? '4096' : '0' }[example] ?? example
        const file = path.join(dir, `${k}.sqlite`)
        if (k === 'readonly') new SQLiteStorage(file).close()
        const s = await openStorage(`sqlite:${file}?${k}=${value}`)
        s.close()
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("zeo's protocol section names this code's version and frame limit", () => {
    const readme = readFileSync(path.join(root, 'packages', 'zeo', 'README.md'), 'utf8')
    expect(readme).to.include(`## Protocol (version ${PROTOCOL_VERSION})`)
    expect(readme).to.include(`${DEFAULT_MAX_FRAME / (1024 * 1024)} MiB by default`)
  })
})
