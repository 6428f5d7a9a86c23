// Big raw records whose content can be checked whole (the checkpoint tests).

/** A record of `bytes` bytes whose every byte tells `k` (k mod 251): big records that can be checked whole. */
export function bigRecord(k: number, bytes: number): Uint8Array {
  const data = new Uint8Array(bytes).fill(k % 251)
  new DataView(data.buffer).setUint32(0, k)
  return data
}

/** The `k` of a bigRecord, or -1 if the record is not one whole. */
export function bigRecordNumber(data: Uint8Array): number {
  if (data.length < 8) return -1
  const k = new DataView(data.buffer, data.byteOffset).getUint32(0)
  for (let i = 4; i < data.length; i++) if (data[i] !== k % 251) return -1
  return k
}
