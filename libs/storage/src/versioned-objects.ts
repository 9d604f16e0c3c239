import { AppError, guarded, type Logger } from '@streambed/common'
import {
  decodeLogBatch,
  decodeStateFile,
  docNameInStateHeader,
  encodeLogBatch,
  encodeStateFile,
  escapeDocName,
  logBatchName,
  sortableWatermark,
  unescapeDocName,
  watermarkFromSortable,
} from './encoding.js'
import { compareWatermarks, type DocStorage, normaliseLog, type Watermark } from './storage.js'

/**
 * A DocStorage over a store of named, immutable objects: the scheme the fs and S3 backends share.
 * Each backend is a small `Blobs` adapter that says where a document's objects live.
 *
 *   <state folder>/<sortable watermark>.ydoc   state versions (encodeStateFile)
 *   <log folder>/<first>_<last>.ylog           update log batches (encodeLogBatch)
 *
 * A document's folders are named by escapeDocName(doc); a sortable watermark sorts like the
 * watermark it encodes, so the names of a document's state versions sort by watermark.
 *
 * Compare-and-set without trusting conditional writes or locks (docs/decisions/0007). Some
 * S3-compatible servers (s3rver among them) ignore `If-None-Match` / `If-Match` on PUT, and an fs
 * lock whose holder stalled may be broken, so correctness rests on neither:
 * - A state version is written once, under a name naming its watermark, and not overwritten (unless
 *   a writer stores the same watermark again).
 * - load: list the state folder and read the version with the highest name; if it vanished between
 *   the listing and the read (collected by a writer), list again.
 * - compareAndSet(expected, next): list the state folder; unless the highest watermark is
 *   `expected` (no version at all for `null`) return false. Otherwise put next's version (if absent:
 *   stores that honour it turn two writers of the same watermark into one winner), then delete the
 *   versions older than the newest two.
 * An adapter may run compareAndSet and delete in a per-document critical section (fs: a lock file);
 * that makes races rare, not harmless, so what follows holds without one.
 *
 * Guarantee. This is not a strict compare-and-set: writers racing from the same `expected` may all
 * find it still highest, and all return true. What holds, provided each writer builds `next` the
 * way compaction does (state(expected) merged with every entry with an id in
 * (expected, next.watermark]):
 *   1. Every stored version with watermark w contains every entry with an id <= w.
 *   2. Outside delete(), a version is deleted only by a writer that has seen two higher ones
 *      written, so the highest version ever written stays, and the watermark `load` returns never
 *      decreases.
 *   3. Once compareAndSet has returned true, `load` returns that writer's watermark or a higher
 *      one: the writer may trim its entries from the stream, they are in storage.
 *   4. compareAndSet returns false, storing nothing, when the highest watermark differs from
 *      `expected`, when `next` is below `expected`, or when a store that honours if-absent puts
 *      already holds a version with next's watermark.
 * So nothing is lost and the watermark never goes back; the price is that some racing writers'
 * work is superseded although they returned true.
 *
 * delete() is not atomic without a critical section: a compareAndSet racing it may leave a state
 * version behind, as if it had run just after the delete.
 *
 * list() takes the newest state version of every document from the adapter (a document is a folder
 * with at least one), collects every name and sorts in memory: escaped names do not sort like
 * names. A hashed name (`~<sha256>`) is read from its state version's header.
 */

/** Where one document's objects live. Folders are key prefixes ending in `/`. */
export interface DocFolders {
  readonly state: string
  readonly log: string
  /** Every folder delete() removes. */
  readonly all: readonly string[]
}

/** A store of immutable objects under string keys; keys are a folder followed by a name. */
export interface Blobs {
  folders(escaped: string): DocFolders
  /** Names of the objects directly in `folder`, in any order; none when the folder is missing. */
  list(folder: string): Promise<string[]>
  /** The name of the newest state version of every document that has one, by escaped name. */
  newestStates(): Promise<Map<string, string>>
  /** The object's bytes (or its first `rangeBytes`), or null when there is no such key. */
  get(key: string, rangeBytes?: number): Promise<Uint8Array | null>
  /**
   * Stores `bytes` durably under `key`; readers see the whole object or none. `ifAbsent`: return
   * false, storing nothing, if the key exists (stores that cannot tell store anyway).
   */
  put(key: string, bytes: Uint8Array, opts: { ifAbsent: boolean }): Promise<boolean>
  /** Removes the objects; missing ones are fine. */
  delete(keys: readonly string[]): Promise<void>
  /** Removes `folder` and every object below it. */
  deleteAll(folder: string): Promise<void>
  /** Runs `fn` while no other critical section of the document runs; optional (see above). */
  exclusive?<T>(escaped: string, fn: () => Promise<T>): Promise<T>
}

export interface VersionedStorageOptions extends Pick<DocStorage, 'kind' | 'ping' | 'close'> {
  /**
   * Receives failures to delete old state versions, which the next write retries. Without one, such
   * a failure fails compareAndSet (on a local disk it means the disk is in trouble).
   */
  logger?: Logger
}

/** Parallel requests within one operation (reading log batches, naming hashed documents). */
const CONCURRENCY = 8
/** Bytes read to find the document name in a state version's header. */
const HEADER_BYTES = 16 * 1024
/** How often load() lists again when the newest version keeps vanishing under it. */
const LOAD_ATTEMPTS = 5

const STATE_NAME = /^(\d{15}-\d{20})\.ydoc$/
const LOG_NAME = /^\d{15}-\d{20}_(\d{15}-\d{20})\.ylog$/

/** Whether `name` is a state version's (adapters use it to find documents). */
export const isStateName = (name: string): boolean => STATE_NAME.test(name)

const stateName = (w: Watermark): string => `${sortableWatermark(w)}.ydoc`

/** The watermark a state version's name names. */
const watermarkOfName = (name: string): Watermark => {
  const sortable = STATE_NAME.exec(name)?.[1]
  if (sortable === undefined) throw new TypeError(`not a state version name: ${name}`)
  return watermarkFromSortable(sortable)
}

/** `fn` over `items`, at most `limit` at a time, results in order. */
const mapLimit = async <T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> => {
  const out: R[] = new Array<R>(items.length)
  let next = 0
  const run = async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i] as T)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run))
  return out
}

/** The name of a document folder, or null when it is hashed; undefined when it is not ours. */
const nameOfFolder = (escaped: string): string | null | undefined => {
  if (escaped.startsWith('~')) return /^~[0-9a-f]{64}$/.test(escaped) ? null : undefined
  try {
    const name = unescapeDocName(escaped)
    return name !== null && escapeDocName(name) === escaped ? name : undefined
  } catch {
    // Malformed percent-escapes: another program's object, not a document.
    return undefined
  }
}

export const createVersionedStorage = (blobs: Blobs, opts: VersionedStorageOptions): DocStorage => {
  const exclusive = <T>(escaped: string, fn: () => Promise<T>): Promise<T> =>
    blobs.exclusive ? blobs.exclusive(escaped, fn) : fn()

  /** The names of a document's state versions, ascending by watermark. */
  const stateNames = async (folder: string): Promise<string[]> =>
    (await blobs.list(folder)).filter(isStateName).sort()

  /**
   * `read` applied to the key of the newest state version; null when there is none. A version
   * collected between listing and reading (`read` returns null) means a newer one exists: list
   * again.
   */
  const withNewestState = async <T>(
    escaped: string,
    read: (key: string) => Promise<T | null>,
  ): Promise<T | null> => {
    const folder = blobs.folders(escaped).state
    for (let attempt = 0; attempt < LOAD_ATTEMPTS; attempt++) {
      const newest = (await stateNames(folder)).at(-1)
      if (newest === undefined) return null
      const result = await read(`${folder}${newest}`)
      if (result !== null) return result
    }
    throw new AppError(
      'STORAGE_UNAVAILABLE',
      `the newest state of ${escaped} vanished ${LOAD_ATTEMPTS} times while being read`,
    )
  }

  /** The document name in the header of a hashed name's newest state version. */
  const hashedName = async (escaped: string, newestKey: string): Promise<string | null> => {
    const readName = async (key: string) => {
      const head = await blobs.get(key, HEADER_BYTES)
      if (!head) return null
      const name = docNameInStateHeader(key, head, head.length < HEADER_BYTES)
      if (name !== null) return name
      const whole = await blobs.get(key)
      return whole && decodeStateFile(key, whole).doc
    }
    // Collected since the listing: a newer version exists, find it.
    return (await readName(newestKey)) ?? (await withNewestState(escaped, readName))
  }

  /** Deletes state versions below the newest two; writers racing us collect what we do not see. */
  const collect = async (doc: string, keys: readonly string[]): Promise<void> => {
    if (keys.length === 0) return
    if (!opts.logger) return blobs.delete(keys)
    const { logger } = opts
    await blobs
      .delete(keys)
      .catch((err: unknown) =>
        logger.warn({ err, doc }, 'could not delete old state versions; the next write will'),
      )
  }

  return {
    kind: opts.kind,
    load: (doc) =>
      guarded('STORAGE_UNAVAILABLE', `cannot read ${doc}`, () =>
        withNewestState(escapeDocName(doc), async (key) => {
          const bytes = await blobs.get(key)
          return bytes && decodeStateFile(key, bytes).stored
        }),
      ),
    watermark: (doc) =>
      guarded('STORAGE_UNAVAILABLE', `cannot read ${doc}`, async () => {
        const newest = (await stateNames(blobs.folders(escapeDocName(doc)).state)).at(-1)
        return newest === undefined ? null : watermarkOfName(newest)
      }),
    compareAndSet: (doc, expected, next) =>
      guarded('STORAGE_UNAVAILABLE', `cannot store ${doc}`, async () => {
        if (expected !== null && compareWatermarks(next.watermark, expected) < 0) return false
        const escaped = escapeDocName(doc)
        const folder = blobs.folders(escaped).state
        return exclusive(escaped, async () => {
          const names = await stateNames(folder)
          const newest = names.at(-1)
          const current = newest === undefined ? null : watermarkOfName(newest)
          const matches =
            current === null || expected === null
              ? current === expected
              : compareWatermarks(current, expected) === 0
          if (!matches) return false
          const name = stateName(next.watermark)
          // Storing `expected`'s watermark again replaces that version; a new one must be new.
          const put = await blobs.put(`${folder}${name}`, encodeStateFile(doc, next), {
            ifAbsent: name !== newest,
          })
          if (!put) return false
          // Keep the previous version too: a concurrent load may be about to read it.
          const old = [...new Set([...names, name])].sort().slice(0, -2)
          await collect(
            doc,
            old.map((n) => `${folder}${n}`),
          )
          return true
        })
      }),
    appendLog: async (doc, entries) => {
      if (entries.length === 0) return
      await guarded('STORAGE_UNAVAILABLE', `cannot archive ${doc}`, async () => {
        const key = `${blobs.folders(escapeDocName(doc)).log}${logBatchName(entries)}.ylog`
        await blobs.put(key, encodeLogBatch(doc, entries), { ifAbsent: false })
      })
    },
    readLog: (doc, readOpts = {}) =>
      guarded('STORAGE_UNAVAILABLE', `cannot read the update log of ${doc}`, async () => {
        const after = readOpts.after === undefined ? undefined : sortableWatermark(readOpts.after)
        const folder = blobs.folders(escapeDocName(doc)).log
        const names = (await blobs.list(folder)).filter((name) => {
          const last = LOG_NAME.exec(name)?.[1]
          // A batch whose last entry is not above `after` has nothing to give.
          return last !== undefined && (after === undefined || last > after)
        })
        const batches = await mapLimit(names, CONCURRENCY, async (name) => {
          const key = `${folder}${name}`
          const bytes = await blobs.get(key)
          // Gone meanwhile: the document is being deleted.
          return bytes ? decodeLogBatch(key, bytes) : []
        })
        return normaliseLog(batches.flat(), readOpts.after)
      }),
    delete: (doc) =>
      guarded('STORAGE_UNAVAILABLE', `cannot delete ${doc}`, async () => {
        const escaped = escapeDocName(doc)
        await exclusive(escaped, async () => {
          for (const folder of blobs.folders(escaped).all) await blobs.deleteAll(folder)
        })
      }),
    list: ({ after, limit = 1000 } = {}) =>
      guarded('STORAGE_UNAVAILABLE', 'cannot list documents', async () => {
        const names: string[] = []
        const hashed: [string, string][] = []
        for (const [escaped, newest] of await blobs.newestStates()) {
          const name = nameOfFolder(escaped)
          if (name === null) hashed.push([escaped, `${blobs.folders(escaped).state}${newest}`])
          else if (name !== undefined) names.push(name)
        }
        const resolved = await mapLimit(hashed, CONCURRENCY, ([escaped, key]) =>
          hashedName(escaped, key),
        )
        resolved.forEach((name, i) => {
          if (name !== null && escapeDocName(name) === hashed[i]?.[0]) names.push(name)
        })
        return names
          .filter((n) => after === undefined || n > after)
          .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
          .slice(0, limit)
      }),
    ping: () => opts.ping(),
    close: () => opts.close(),
  }
}
