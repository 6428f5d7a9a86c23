// The native addon is built by `npm install` (node-gyp) and loads into this process.
import { expect } from 'chai'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
const require = createRequire(import.meta.url)

describe('native addon', () => {
  it('loads and reports the OS page size', () => {
    const addon = require(path.join(root, 'build/Release/virtmem.node')) as { osPageSize(): number }
    const size = addon.osPageSize()
    expect(size).to.be.a('number')
    expect(size).to.be.greaterThanOrEqual(4096)
    expect(size & (size - 1)).to.equal(0, 'page size is a power of two')
  })
})
