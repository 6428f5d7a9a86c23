// Classes are stored by a stable name, never by their JavaScript name (which minifiers change
// and two modules may share). A record names the class of its object; loading looks the name up
// here. Both persistent classes and plain value classes (stored inside a record) are registered.

import { UnknownClassError } from './errors.js'

/** Any class, whatever its constructor's parameters. */
export type AnyClass = abstract new (...args: never[]) => object

const byName = new Map<string, AnyClass>()
const byClass = new Map<AnyClass, string>()

/**
 * Register `cls` under `name` so that its instances can be stored and loaded. Registering the
 * same class under the same name again is a no-op; reusing a name for another class, or a class
 * under another name, is an error.
 */
export function registerClass(name: string, cls: AnyClass): void {
  if (typeof name !== 'string' || name === '') throw new TypeError('registerClass: the name must be a non-empty string')
  if (typeof cls !== 'function') throw new TypeError(`registerClass(${JSON.stringify(name)}): not a class`)
  const existing = byName.get(name)
  if (existing === cls) return
  if (existing !== undefined) {
    throw new TypeError(`registerClass: the name ${JSON.stringify(name)} is already used by class ${existing.name}`)
  }
  const otherName = byClass.get(cls)
  if (otherName !== undefined) {
    throw new TypeError(`registerClass: class ${cls.name} is already registered as ${JSON.stringify(otherName)}`)
  }
  byName.set(name, cls)
  byClass.set(cls, name)
}

/** The class registered under `name`, or undefined. */
export function findClass(name: string): AnyClass | undefined {
  return byName.get(name)
}

/** The class registered under `name`; UnknownClassError if there is none. */
export function classForName(name: string): AnyClass {
  const cls = byName.get(name)
  if (cls === undefined) throw new UnknownClassError(name)
  return cls
}

/** The name `cls` itself (not a base class) was registered under, or undefined. */
export function nameOfClass(cls: unknown): string | undefined {
  return byClass.get(cls as AnyClass)
}

/** Every registered name (for tools that list a database). */
export function registeredClassNames(): string[] {
  return [...byName.keys()].sort()
}
