// Objects whose class is not registered. The database must stay listable and dumpable when code
// that defined a class is gone, so references to such objects still load, as ghosts of a Broken
// subclass named after the stored class; activating one throws UnknownClassError naming it.

import { Persistent } from './persistent.js'

const brokenClasses = new Map<string, typeof Broken>()
/** The same classes, for `isBroken`. */
const brokenClassSet = new WeakSet<object>()

/**
 * Whether `obj` is a Broken object: asked at every load, and cheaper than `instanceof Broken`,
 * which for any other object walks its prototype chain through the prototype hook, a Proxy.
 */
export function isBroken(obj: Persistent): boolean {
  const cls = obj.constructor
  // A Broken subclass of the application's own (registered as a placeholder) counts too: the
  // walk goes up the constructors (Item, Persistent, Function.prototype), never the Proxy.
  return brokenClassSet.has(cls) || cls === Broken || Object.prototype.isPrototypeOf.call(Broken, cls)
}

export class Broken extends Persistent {
  /** The class name the record names. */
  static brokenClassName = ''

  get _p_brokenClassName(): string {
    return (this.constructor as typeof Broken).brokenClassName
  }

  /** The Broken subclass standing for the unregistered class `name`. */
  static forClass(name: string): typeof Broken {
    let cls = brokenClasses.get(name)
    if (cls === undefined) {
      cls = class extends Broken {
        static override brokenClassName = name
      }
      Object.defineProperty(cls, 'name', { value: `Broken<${name}>` })
      brokenClasses.set(name, cls)
      brokenClassSet.add(cls)
    }
    return cls
  }
}
