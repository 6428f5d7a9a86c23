// Edges of the BigArray API against wendelin.core's bigarray and numpy: get/set arguments that
// are not numbers, sizes beyond what a JavaScript number addresses, overlapping assignment.
import { expect } from 'chai'
import { BigArray, ZBigArray } from '@wendelin/bigarray'

import { PS, cleanup, fileH } from './helpers.js'

describe('BigArray API edges', () => {
  afterEach(() => cleanup())

  it('get/set refuse an index that is not a number instead of reading element 0', () => {
    const A = new BigArray([10], 'int32', fileH())
    for (let i = 0; i < 10; i++) A.set(i, i + 1)
    expect(() => A.get(null as unknown as number)).to.throw(TypeError)
    expect(() => A.get('3' as unknown as number)).to.throw(TypeError)
    expect(() => A.get(3n as unknown as number)).to.throw(TypeError)
    expect(() => A.get([3] as unknown as number)).to.throw(TypeError)
    expect(() => A.set(null as unknown as number, 99)).to.throw(TypeError)
    expect(A.get(0)).to.equal(1)
  })

  it('refuses a shape whose bytes exceed Number.MAX_SAFE_INTEGER (instead of aliasing elements or aborting the process)', () => {
    const fh = fileH()
    // 2^54 bytes: offsets near the end are not representable; the first access aborted the process
    expect(() => new BigArray([2 ** 52, 4], 'int8', fh)).to.throw(RangeError, /too big/)
    expect(() => new BigArray([2 ** 50, 2 ** 4], 'float64', fh, { order: 'F' })).to.throw(RangeError, /too big/)
    expect(() => new ZBigArray([2 ** 52, 4], 'int8', { blksize: PS })).to.throw(RangeError, /too big/)
    const B = new BigArray([4, 4], 'int8', fh)
    expect(() => B.resize([2 ** 52, 4])).to.throw(RangeError, /too big/)
    expect(B.shape).to.deep.equal([4, 4])
    B.resize([2 ** 49, 4]) // 2^51 bytes: still fine
    expect(B.get(2 ** 49 - 1, 3)).to.equal(0)
  })

  it('assigning a view of the same pages to an overlapping slice copies first (numpy semantics)', () => {
    const A = new BigArray([10], 'int32', fileH())
    const fill = () => { for (let i = 0; i < 10; i++) A.set(i, i + 1) }
    fill()
    A.assign(A.slice([0, 9]), [1, 10]) // A[1:10] = A[0:9]
    expect([...A]).to.deep.equal([1, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    fill()
    A.assign(A.slice([null, null, -1])) // A[:] = A[::-1]
    expect([...A]).to.deep.equal([10, 9, 8, 7, 6, 5, 4, 3, 2, 1])
    // across pages, 2-d
    const M = new BigArray([3, PS], 'uint8', fileH())
    M.assign(1, 0); M.assign(2, 1); M.assign(3, 2)
    M.assign(M.slice([0, 2]), [1, 3]) // M[1:3] = M[0:2]
    expect([M.get(0, 5), M.get(1, 5), M.get(2, PS - 1)]).to.deep.equal([1, 1, 2])
  })
})
