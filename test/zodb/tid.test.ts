// oids and tids: 64-bit bigints; tids are ZODB timestamps that sort by time and increase strictly.
import { expect } from 'chai'
import { MAX_TID, bytesToId, hexToId, idToBytes, idToHex, newTid, tidFromDate, tidToDate } from '@wendelin/zodb'

describe('tids', () => {
  it('encode a time and give it back to the millisecond', () => {
    for (const iso of ['1900-01-01T00:00:00.000Z', '1999-12-31T23:59:59.999Z', '2024-02-29T12:34:56.789Z', '2026-11-21T09:25:36.001Z']) {
      const d = new Date(iso)
      expect(tidToDate(tidFromDate(d)).toISOString()).to.equal(iso)
    }
  })

  it('use the ZODB TimeStamp layout', () => {
    // High 32 bits: minutes since 1900 counted with 31-day months; low 32 bits: seconds * 2^32 / 60.
    const minutes = (((2000 - 1900) * 12 + 0) * 31 + 0) * 24 * 60
    expect(tidFromDate(new Date('2000-01-01T00:00:00Z'))).to.equal(BigInt(minutes) << 32n)
    expect(tidFromDate(new Date('2000-01-01T00:00:30Z')) & 0xffff_ffffn).to.equal(1n << 31n)
  })

  it('sort by time and increase strictly', () => {
    const a = tidFromDate(new Date('2024-01-01T00:00:00Z'))
    const b = tidFromDate(new Date('2024-01-01T00:00:00.001Z'))
    expect(b > a).to.equal(true)
    expect(newTid(b, new Date('2024-01-01T00:00:00Z'))).to.equal(b + 1n) // the clock went back
    expect(newTid(a, new Date('2024-06-01T00:00:00Z')) > a).to.equal(true)
  })

  it('refuse what they cannot encode', () => {
    expect(() => tidFromDate(new Date('1899-12-31T00:00:00Z'))).to.throw(RangeError, /before 1900/)
    expect(() => tidFromDate(new Date(NaN))).to.throw(RangeError)
    expect(() => tidToDate(-1n)).to.throw(TypeError)
    expect(() => tidToDate(MAX_TID + 1n)).to.throw(TypeError)
  })
})

describe('ids', () => {
  it('print as 16 hex digits and as 8 big-endian bytes', () => {
    expect(idToHex(255n)).to.equal('00000000000000ff')
    expect(hexToId('0x00000000000000ff')).to.equal(255n)
    expect(hexToId('ff')).to.equal(255n)
    expect(() => hexToId('xyz')).to.throw(RangeError)
    expect([...idToBytes(0x0102030405060708n)]).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8])
    expect(bytesToId(idToBytes(MAX_TID))).to.equal(MAX_TID)
    expect(() => idToHex(5 as unknown as bigint)).to.throw(TypeError, /bigint/)
  })
})
