// bytesRecord and OWN_RECORD: a record laid out with its bytes last, filled by the caller, must
// be what the encoder writes for the same state, and an object may hand such a record over.
import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import { DB, MemoryStorage, OWN_RECORD, Persistent, bytesRecord, decodeRaw, encodeStateRecord, registerClass } from '@wendelin/zodb'

const noRefs = {
  persistentRef(): never {
    throw new Error('no references here')
  },
}

/** Its state is just `data`: while that is an array bytesRecord made, its record is handed over. */
class OwnBlob extends Persistent {
  [OWN_RECORD](className: string): Uint8Array | null {
    const r = ownRecords.get(this.data)
    if (r === undefined || className !== 'test.bytesRecord.OwnBlob') return null
    handed++
    return r
  }

  data: Uint8Array = new Uint8Array(0)
}
let handed = 0
registerClass('test.bytesRecord.OwnBlob', OwnBlob)
const ownRecords = new WeakMap<Uint8Array, Uint8Array>()

describe('bytesRecord', () => {
  // every bin size class and its edges
  for (const n of [0, 1, 255, 256, 65535, 65536, 2 * 1024 * 1024 + 3]) {
    it(`lays out the record the encoder writes for ${n} bytes, the bytes 8-aligned`, () => {
      const { record, bytes } = bytesRecord('test.bytesRecord.OwnBlob', 'data', n)
      expect(bytes.length).to.equal(n)
      expect(bytes.byteOffset % 8).to.equal(0)
      expect(bytes.buffer).to.equal(record.buffer)
      expect(bytes.byteOffset + n).to.equal(record.byteOffset + record.length) // last in the record
      for (let i = 0; i < n; i++) bytes[i] = (i * 7 + 3) & 0xff
      const expected = encodeStateRecord('test.bytesRecord.OwnBlob', { data: bytes.slice() }, noRefs)
      expect(Buffer.compare(record, expected)).to.equal(0)
      const raw = decodeRaw(record)
      expect(raw.className).to.equal('test.bytesRecord.OwnBlob')
    })
  }

  it('refuses a negative or fractional length', () => {
    expect(() => bytesRecord('test.bytesRecord.OwnBlob', 'data', -1)).to.throw(RangeError)
    expect(() => bytesRecord('test.bytesRecord.OwnBlob', 'data', 1.5)).to.throw(RangeError)
  })
})

describe('OWN_RECORD', () => {
  it('stores the record an object hands over, and encodes as usual when it hands none', () => {
    const db = new DB(new MemoryStorage())
    const tm = new TransactionManager()
    const conn = db.open({ transactionManager: tm })
    const obj = new OwnBlob()
    const { record, bytes } = bytesRecord('test.bytesRecord.OwnBlob', 'data', 300)
    bytes.fill(5)
    ownRecords.set(bytes, record)
    obj.data = bytes
    ;(conn.root as Record<string, unknown>).obj = obj
    tm.commit()
    const conn2 = db.open({ transactionManager: new TransactionManager() })
    const back = (conn2.root as Record<string, unknown>).obj as OwnBlob
    expect(Buffer.from(back.data).equals(Buffer.alloc(300, 5))).to.equal(true)
    expect(handed).to.equal(1)
    expect(Buffer.compare(db.storage.loadBefore(obj._p_oid!, 2n ** 63n)!.data, record)).to.equal(0)
    // an array of no record: the ordinary path
    obj.data = new Uint8Array([1, 2, 3])
    tm.commit()
    const conn3 = db.open({ transactionManager: new TransactionManager() })
    expect([...((conn3.root as Record<string, unknown>).obj as OwnBlob).data]).to.deep.equal([1, 2, 3])
    expect(handed).to.equal(1)
    db.close()
  })
})
