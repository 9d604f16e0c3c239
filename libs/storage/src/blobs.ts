/**
 * A store of named, immutable objects (fs files, S3 objects) and how to read one while writers
 * replace objects in it: the ground that the versioned-object scheme (versioned-objects.ts) and
 * the update log over objects (object-log.ts) stand on. Each backend is a small `Blobs` adapter
 * that says where a document's objects live.
 */
import { AppError } from '@streambed/common'
import { sortableWatermark, watermarkFromSortable } from './encoding.js'
import type { Watermark } from './storage.js'

/** Where one document's objects live. Folders are key prefixes ending in `/`. */
export interface DocFolders {
  /** State versions, `<sortable watermark>.ydoc`. */
  readonly state: string
  /** Log batches and segments, `<first>_<last>.ylog`. */
  readonly log: string
  /** Checkpoints, `<sortable upTo>.ydoc`. */
  readonly checkpoints: string
  /** Every folder delete() removes. */
  readonly all: readonly string[]
}

/**
 * What makes a document show in a listing: a state version (`list`), or history — a log batch or
 * a checkpoint (`listHistory`).
 */
export type DocKind = 'state' | 'history'

/** One object of a putMany. */
export interface BlobPut {
  readonly key: string
  readonly bytes: Uint8Array
  /** As put's. */
  readonly ifAbsent: boolean
}

/** Releases a document's lock. */
export type Unlock = () => Promise<void>

/** A store of immutable objects under string keys; keys are a folder followed by a name. */
export interface Blobs {
  folders(escaped: string): DocFolders
  /** Names of the objects directly in `folder`, in any order; none when the folder is missing. */
  list(folder: string): Promise<string[]>
  /** Like list, with each object's size in bytes; one deleted while being listed may be left out. */
  listSized(folder: string): Promise<Map<string, number>>
  /**
   * Every document that has an object of `kind`, by escaped name, with the key of one such object:
   * for `state` its newest state version, for `history` any log batch or checkpoint (the header of
   * each names the document).
   */
  documents(kind: DocKind): Promise<Map<string, string>>
  /** The object's bytes (or its first `rangeBytes`), or null when there is no such key. */
  get(key: string, rangeBytes?: number): Promise<Uint8Array | null>
  /**
   * Stores `bytes` durably under `key`; readers see the whole object or none. `ifAbsent`: return
   * false, storing nothing, if the key exists (stores that cannot tell store anyway).
   */
  put(key: string, bytes: Uint8Array, opts: { ifAbsent: boolean }): Promise<boolean>
  /** put of each object, together (fs: one pass of fsyncs), the results in order. */
  putMany(puts: readonly BlobPut[]): Promise<boolean[]>
  /** Removes the objects; missing ones are fine. */
  delete(keys: readonly string[]): Promise<void>
  /** Removes `folder` and every object below it. */
  deleteAll(folder: string): Promise<void>
  /**
   * Takes the document's lock (a critical section no other process enters meanwhile) and returns
   * its release; with `wait: false`, null at once when another holder has it. Optional.
   */
  lock?(escaped: string, opts: { wait: boolean }): Promise<Unlock | null>
}

/** Parallel requests within one operation (reading log batches, naming hashed documents). */
export const CONCURRENCY = 8
/** Parallel requests of a group commit (loadMany, appendLogMany, compareAndSetMany). */
export const BATCH_CONCURRENCY = 32
/** Bytes read to find a document name or an entry count in an object's header. */
export const HEADER_BYTES = 16 * 1024
/** How often an operation lists again when objects it listed keep vanishing under it. */
const SETTLE_ATTEMPTS = 5
/** The most listings stableListing takes. */
const LISTINGS = 5

const STATE_NAME = /^(\d{15}-\d{20})\.ydoc$/
const LOG_NAME = /^(\d{15}-\d{20})_(\d{15}-\d{20})\.ylog$/

/** Whether `name` is a state version's or a checkpoint's (adapters use it to find documents). */
export const isStateName = (name: string): boolean => STATE_NAME.test(name)

/** Whether `name` is a log batch's or segment's. */
export const isLogName = (name: string): boolean => LOG_NAME.test(name)

/** The name of the state version or checkpoint of watermark `w`. */
export const stateName = (w: Watermark): string => `${sortableWatermark(w)}.ydoc`

/** The watermark a state version's or checkpoint's name names. */
export const watermarkOfName = (name: string): Watermark => {
  const sortable = STATE_NAME.exec(name)?.[1]
  if (sortable === undefined) throw new TypeError(`not a state version name: ${name}`)
  return watermarkFromSortable(sortable)
}

/** A log batch as its name describes it: the sortable ids of its first and last entries. */
export interface BatchName {
  readonly name: string
  readonly first: string
  readonly last: string
}

/** The log batches among `names` (other objects, such as temporary files, are left out). */
export const batchNames = (names: Iterable<string>): BatchName[] => {
  const out: BatchName[] = []
  for (const name of names) {
    const m = LOG_NAME.exec(name)
    if (m) out.push({ name, first: m[1] as string, last: m[2] as string })
  }
  return out
}

/**
 * `fn` over `items`, at most `limit` at a time, results in order. After a failure no new item
 * starts; the ones under way finish before the first error is thrown (so a caller cleaning up
 * after it does not race them).
 */
export const mapLimit = async <T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> => {
  const out: R[] = new Array<R>(items.length)
  let next = 0
  let failed = false
  const run = async () => {
    while (next < items.length && !failed) {
      const i = next++
      try {
        out[i] = await fn(items[i] as T)
      } catch (err) {
        failed = true
        throw err
      }
    }
  }
  const runs = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, run))
  const failure = runs.find((r) => r.status === 'rejected')
  if (failure) throw failure.reason
  return out
}

/** What an attempt returns when an object it listed was gone by the time it read it. */
export const VANISHED: unique symbol = Symbol('vanished')

/**
 * Runs `attempt` until it returns something other than VANISHED. An object that vanished between
 * a listing and a read was replaced by a writer (a newer state version, a segment holding a log
 * batch's entries), so a new listing finds its successor. Gives up after a few attempts.
 */
export const untilSettled = async <T>(
  what: string,
  attempt: () => Promise<T | typeof VANISHED>,
): Promise<T> => {
  for (let i = 0; i < SETTLE_ATTEMPTS; i++) {
    const result = await attempt()
    if (result !== VANISHED) return result
  }
  throw new AppError(
    'STORAGE_UNAVAILABLE',
    `${what} vanished ${SETTLE_ATTEMPTS} times while being read`,
  )
}

/**
 * The union of listings repeated until one finds nothing new (at most a few). One listing is not a
 * snapshot: a directory read in several system calls, or a listing in several pages, may miss an
 * object written meanwhile (a segment) together with the ones it replaces, once they are deleted.
 * A listing begun after the segment was written finds it. Entries `listOnce` leaves out do not
 * count (a reader of a range ignores batches appended beyond it).
 */
export const stableListing = async <T>(
  listOnce: () => Promise<Map<string, T>>,
): Promise<Map<string, T>> => {
  const all = await listOnce()
  for (let i = 1; i < LISTINGS; i++) {
    const before = all.size
    for (const [name, value] of await listOnce()) if (!all.has(name)) all.set(name, value)
    if (all.size === before) break
  }
  return all
}
