// Plain objects sized for their number of properties: made by the decoder for a record's
// state and by Persistent for a stored object's state dictionary.

/**
 * Constructors of plain objects with room for 5 to 8 properties in the object itself, made
 * when first needed. A `{}` has room for 4: the decoded state of an object with 5 attributes
 * put the fifth in a property array of its own (W-OBJ's Item: 56 + 40 bytes where 64 do, kept
 * by every loaded object). V8 sizes a constructor's objects for 8 properties, then, after a
 * few, for as many as they got: each size has its own. Their prototype is Object.prototype, so
 * the objects are plain objects in every way that shows.
 */
const sizedObjects: Array<(new () => Record<string, unknown>) | undefined> = []

export function plainObjectFor(n: number): Record<string, unknown> {
  if (n <= 4 || n > 8) return {}
  let C = sizedObjects[n]
  if (C === undefined) {
    const f = function () {} as unknown as new () => Record<string, unknown>
    f.prototype = Object.prototype
    sizedObjects[n] = C = f
  }
  return new C()
}
