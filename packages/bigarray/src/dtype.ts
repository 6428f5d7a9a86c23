// Element types of a BigArray: the typed-array kinds JavaScript has, and record types (named
// fields at fixed byte offsets, like numpy's structured dtypes).

/** A scalar element type: one of JavaScript's typed-array element kinds. */
export type ScalarDType =
  | 'int8'
  | 'uint8'
  | 'uint8-clamped'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'float32'
  | 'float64'
  | 'bigint64'
  | 'biguint64'

/** One field of a record: its scalar type and byte offset inside the record. */
export interface RecordField {
  readonly dtype: ScalarDType
  readonly offset: number
}

export type RecordFields = Readonly<Record<string, RecordField>>

/** A record element type: named scalar fields at fixed byte offsets inside `itemsize` bytes. */
export interface RecordDType<F extends RecordFields = RecordFields> {
  readonly kind: 'record'
  readonly itemsize: number
  readonly fields: F
}

export type DType = ScalarDType | RecordDType

/** The typed array holding elements of a scalar dtype. */
export type TypedArrayOf<D extends ScalarDType> = D extends 'int8'
  ? Int8Array<ArrayBuffer>
  : D extends 'uint8'
    ? Uint8Array<ArrayBuffer>
    : D extends 'uint8-clamped'
      ? Uint8ClampedArray<ArrayBuffer>
      : D extends 'int16'
        ? Int16Array<ArrayBuffer>
        : D extends 'uint16'
          ? Uint16Array<ArrayBuffer>
          : D extends 'int32'
            ? Int32Array<ArrayBuffer>
            : D extends 'uint32'
              ? Uint32Array<ArrayBuffer>
              : D extends 'float32'
                ? Float32Array<ArrayBuffer>
                : D extends 'float64'
                  ? Float64Array<ArrayBuffer>
                  : D extends 'bigint64'
                    ? BigInt64Array<ArrayBuffer>
                    : D extends 'biguint64'
                      ? BigUint64Array<ArrayBuffer>
                      : never

export type AnyTypedArray =
  | Int8Array<ArrayBuffer>
  | Uint8Array<ArrayBuffer>
  | Uint8ClampedArray<ArrayBuffer>
  | Int16Array<ArrayBuffer>
  | Uint16Array<ArrayBuffer>
  | Int32Array<ArrayBuffer>
  | Uint32Array<ArrayBuffer>
  | Float32Array<ArrayBuffer>
  | Float64Array<ArrayBuffer>
  | BigInt64Array<ArrayBuffer>
  | BigUint64Array<ArrayBuffer>

/** The JavaScript value of one element of a scalar dtype. */
export type ScalarValueOf<D extends ScalarDType> = D extends 'bigint64' | 'biguint64' ? bigint : number

/** One record, as a plain object of its fields. */
export type RecordValue = Record<string, number | bigint>

/** The value of one element. */
export type ValueOf<D extends DType> = D extends ScalarDType ? ScalarValueOf<D> : RecordValue

export interface TypedArrayConstructorOf<T extends AnyTypedArray> {
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): T
  new (length: number): T
  readonly BYTES_PER_ELEMENT: number
}

const CTORS: Record<ScalarDType, TypedArrayConstructorOf<AnyTypedArray>> = {
  int8: Int8Array,
  uint8: Uint8Array,
  'uint8-clamped': Uint8ClampedArray,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  float32: Float32Array,
  float64: Float64Array,
  bigint64: BigInt64Array,
  biguint64: BigUint64Array,
}

export const SCALAR_DTYPES: readonly ScalarDType[] = Object.keys(CTORS) as ScalarDType[]

const ALIASES: Record<string, ScalarDType> = { uint8_clamped: 'uint8-clamped', uint8clamped: 'uint8-clamped', f8: 'float64', f4: 'float32', i4: 'int32', u1: 'uint8', i8: 'bigint64', u8: 'biguint64' }

export class UnsupportedDTypeError extends TypeError {
  constructor(what: string) {
    super(`unsupported dtype ${what}: expected one of ${SCALAR_DTYPES.join(', ')}, or a record dtype made with recordDType()`)
    this.name = 'UnsupportedDTypeError'
  }
}

export function isScalarDType(d: unknown): d is ScalarDType {
  return typeof d === 'string' && Object.prototype.hasOwnProperty.call(CTORS, d)
}

export function typedArrayCtor<D extends ScalarDType>(d: D): TypedArrayConstructorOf<TypedArrayOf<D>> {
  return CTORS[d] as unknown as TypedArrayConstructorOf<TypedArrayOf<D>>
}

export function scalarSize(d: ScalarDType): number {
  return CTORS[d].BYTES_PER_ELEMENT
}

export function isBigIntDType(d: ScalarDType): boolean {
  return d === 'bigint64' || d === 'biguint64'
}

/** Bytes per element. */
export function itemsizeOf(d: DType): number {
  return typeof d === 'string' ? scalarSize(d) : d.itemsize
}

/**
 * A record dtype. Fields given as a list are packed one after the other (numpy's default);
 * fields given as an object name their offsets. `itemsize` defaults to the end of the last
 * field and may be larger (padding).
 *
 *     recordDType([['t', 'float64'], ['id', 'int32']])          // t@0 id@8, 12 bytes
 *     recordDType({ t: { dtype: 'float64', offset: 8 }, id: { dtype: 'int32', offset: 0 } }, { itemsize: 16 })
 */
export function recordDType<const L extends ReadonlyArray<readonly [string, ScalarDType]>>(
  fields: L,
  options?: { itemsize?: number },
): RecordDType<{ readonly [E in L[number] as E[0]]: { readonly dtype: E[1]; readonly offset: number } }>
export function recordDType<const F extends Readonly<Record<string, { readonly dtype: ScalarDType; readonly offset: number }>>>(
  fields: F,
  options?: { itemsize?: number },
): RecordDType<{ readonly [K in keyof F]: { readonly dtype: F[K]['dtype']; readonly offset: number } }>
export function recordDType(
  fields: ReadonlyArray<readonly [string, ScalarDType]> | RecordFields,
  options: { itemsize?: number } = {},
): RecordDType {
  const out: Record<string, RecordField> = {}
  let end = 0
  if (Array.isArray(fields)) {
    for (const [name, dtype] of fields as ReadonlyArray<readonly [string, ScalarDType]>) {
      const d = parseScalar(dtype, `field ${name}`)
      out[name] = { dtype: d, offset: end }
      end += scalarSize(d)
    }
  } else {
    for (const [name, f] of Object.entries(fields as Readonly<Record<string, RecordField>>)) {
      const d = parseScalar(f.dtype, `field ${name}`)
      if (!Number.isSafeInteger(f.offset) || f.offset < 0) throw new RangeError(`recordDType: field ${name}: offset must be a non-negative integer`)
      out[name] = { dtype: d, offset: f.offset }
      end = Math.max(end, f.offset + scalarSize(d))
    }
  }
  if (Object.keys(out).length === 0) throw new TypeError('recordDType: a record needs at least one field')
  const itemsize = options.itemsize ?? end
  if (!Number.isSafeInteger(itemsize) || itemsize < end) throw new RangeError(`recordDType: itemsize ${itemsize} is smaller than the fields (${end} bytes)`)
  return Object.freeze({ kind: 'record', itemsize, fields: Object.freeze(out) })
}

function parseScalar(d: unknown, what: string): ScalarDType {
  if (isScalarDType(d)) return d
  if (typeof d === 'string' && Object.prototype.hasOwnProperty.call(ALIASES, d)) return ALIASES[d]!
  throw new UnsupportedDTypeError(`${JSON.stringify(d)} (${what})`)
}

/** Checks and normalises a dtype given by a user or read from the database. */
export function parseDType(d: unknown): DType {
  if (typeof d === 'string') return parseScalar(d, 'element type')
  if (d !== null && typeof d === 'object' && (d as { kind?: unknown }).kind === 'record') {
    const r = d as { itemsize?: unknown; fields?: unknown }
    if (r.fields === null || typeof r.fields !== 'object') throw new UnsupportedDTypeError('record without fields')
    return recordDType(r.fields as Record<string, RecordField>, typeof r.itemsize === 'number' ? { itemsize: r.itemsize } : {})
  }
  throw new UnsupportedDTypeError(d === null || typeof d !== 'object' ? String(d) : JSON.stringify(d))
}

/** A readable name: 'float64', or 'record{t:float64@0,id:int32@8}/12'. */
export function dtypeName(d: DType): string {
  if (typeof d === 'string') return d
  return `record{${Object.entries(d.fields)
    .map(([n, f]) => `${n}:${f.dtype}@${f.offset}`)
    .join(',')}}/${d.itemsize}`
}

/** A plain JSON-able copy (what a ZBigArray stores). */
export function dtypeToJSON(d: DType): string | { kind: 'record'; itemsize: number; fields: Record<string, { dtype: ScalarDType; offset: number }> } {
  if (typeof d === 'string') return d
  const fields: Record<string, { dtype: ScalarDType; offset: number }> = {}
  for (const [n, f] of Object.entries(d.fields)) fields[n] = { dtype: f.dtype, offset: f.offset }
  return { kind: 'record', itemsize: d.itemsize, fields }
}
