import { guarded, type Logger } from '@streambed/common'
import {
  BATCH_CONCURRENCY,
  type BlobPut,
  type Blobs,
  CONCURRENCY,
  type DocKind,
  HEADER_BYTES,
  isLogName,
  isStateName,
  mapLimit,
  stateName,
  type Unlock,
  untilSettled,
  VANISHED,
  watermarkOfName,
} from './blobs.js'
import {
  decodeStateFile,
  docNameInHeader,
  encodeStateFile,
  escapeDocName,
  unescapeDocName,
} from './encoding.js'
import { createObjectLog } from './object-log.js'
import {
  assertDistinctDocs,
  type CompareAndSetItem,
  compareWatermarks,
  type DocStorage,
  type Watermark,
} from './storage.js'

/**
 * A DocStorage over a store of named, immutable objects (blobs.ts): the scheme the fs and S3
 * backends share. Each backend is a small `Blobs` adapter that says where a document's objects
 * live.
 *
 *   <state folder>/<sortable watermark>.ydoc        state versions (encodeStateFile)
 *   <log folder>/<first>_<last>.ylog                update log batches and segments (object-log.ts)
 *   <checkpoints folder>/<sortable upTo>.ydoc       checkpoints (encodeStateFile, watermark = upTo)
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
 * that makes races rare, not harmless, so what follows holds without one. compareAndSetMany does the
 * same for each document, the puts of all of them together (fs: one pass of fsyncs).
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
 * Checkpoints are plain objects named by their upTo: putting one again replaces it.
 *
 * list() takes the newest state version of every document from the adapter (a document is a folder
 * with at least one), listHistory() one log batch or checkpoint of every document that has one;
 * both collect every name and sort in memory: escaped names do not sort like names. A hashed name
 * (`~<sha256>`) is read from the header of that object (each kind names its document).
 */

export interface VersionedStorageOptions extends Pick<DocStorage, 'kind' | 'ping' | 'close'> {
  /**
   * Receives failures to delete old state versions. Deleting them is best effort: the versions are
   * stored by then (a batch's for every document), and the next write deletes them.
   */
  logger: Logger
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

/** What compareAndSet decided in the critical section: the version to put, and the versions before. */
interface Decision {
  readonly doc: string
  readonly folder: string
  readonly names: readonly string[]
  readonly name: string
  readonly put: BlobPut
}

/** A `next` below `expected` is refused without looking: a stored watermark never goes back. */
const goesBack = ({ expected, next }: CompareAndSetItem) =>
  expected !== null && compareWatermarks(next.watermark, expected) < 0

export const createVersionedStorage = (blobs: Blobs, opts: VersionedStorageOptions): DocStorage => {
  /** The document's lock (waiting for it, or null when `wait` is false and it is taken). */
  const lock = (escaped: string, wait: boolean): Promise<Unlock | null> =>
    blobs.lock ? blobs.lock(escaped, { wait }) : Promise.resolve(async () => {})

  const exclusive = async <T>(escaped: string, fn: () => Promise<T>): Promise<T> => {
    const unlock = await lock(escaped, true)
    try {
      return await fn()
    } finally {
      await unlock?.()
    }
  }

  /** The names of a document's state versions, ascending by watermark. */
  const stateNames = async (folder: string): Promise<string[]> =>
    (await blobs.list(folder)).filter(isStateName).sort()

  /** The key of one object of `kind` of a document (the newest state version), if it has any. */
  const someKey = async (kind: DocKind, escaped: string): Promise<string | undefined> => {
    const { state, checkpoints, log } = blobs.folders(escaped)
    if (kind === 'state') {
      const newest = (await stateNames(state)).at(-1)
      return newest === undefined ? undefined : `${state}${newest}`
    }
    const checkpoint = (await blobs.list(checkpoints)).find(isStateName)
    if (checkpoint !== undefined) return `${checkpoints}${checkpoint}`
    const batch = (await blobs.list(log)).find(isLogName)
    return batch === undefined ? undefined : `${log}${batch}`
  }

  /**
   * `read` applied to the key of the newest state version; null when there is none. A version
   * collected between listing and reading (`read` returns null) means a newer one exists: list
   * again.
   */
  const withNewestState = <T>(
    escaped: string,
    read: (key: string) => Promise<T | null>,
  ): Promise<T | null> =>
    untilSettled(`the newest state of ${escaped}`, async () => {
      const key = await someKey('state', escaped)
      return key === undefined ? null : ((await read(key)) ?? VANISHED)
    })

  /** The document name in the header of the object at `key`; null when it is gone. */
  const nameInObject = async (key: string): Promise<string | null> => {
    const head = await blobs.get(key, HEADER_BYTES)
    if (!head) return null
    const name = docNameInHeader(key, head, head.length < HEADER_BYTES)
    if (name !== null) return name
    const whole = await blobs.get(key)
    return whole && docNameInHeader(key, whole, true)
  }

  /** The name of a hashed document, read from `key` or, gone since the listing, another object. */
  const hashedName = async (kind: DocKind, escaped: string, key: string): Promise<string | null> =>
    (await nameInObject(key)) ??
    untilSettled(`the objects of ${escaped}`, async () => {
      const other = await someKey(kind, escaped)
      return other === undefined ? null : ((await nameInObject(other)) ?? VANISHED)
    })

  const listDocs = async (
    kind: DocKind,
    { after, limit = 1000 }: { after?: string; limit?: number },
  ): Promise<string[]> => {
    const names: string[] = []
    const hashed: [string, string][] = []
    for (const [escaped, key] of await blobs.documents(kind)) {
      const name = nameOfFolder(escaped)
      if (name === null) hashed.push([escaped, key])
      else if (name !== undefined) names.push(name)
    }
    const resolved = await mapLimit(hashed, CONCURRENCY, ([escaped, key]) =>
      hashedName(kind, escaped, key),
    )
    resolved.forEach((name, i) => {
      if (name !== null && escapeDocName(name) === hashed[i]?.[0]) names.push(name)
    })
    return names
      .filter((n) => after === undefined || n > after)
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, limit)
  }

  /** Deletes state versions below the newest two; writers racing us collect what we do not see. */
  const collect = async (doc: string, keys: readonly string[]): Promise<void> => {
    if (keys.length === 0) return
    await blobs
      .delete(keys)
      .catch((err: unknown) =>
        opts.logger.warn({ err, doc }, 'could not delete old state versions; the next write will'),
      )
  }

  /**
   * compareAndSet's decision, taken in the document's critical section: the put of next's version
   * if the highest stored watermark is `expected` (no version at all for `null`), else null.
   */
  const decide = async ({ doc, expected, next }: CompareAndSetItem): Promise<Decision | null> => {
    const folder = blobs.folders(escapeDocName(doc)).state
    const names = await stateNames(folder)
    const newest = names.at(-1)
    const current = newest === undefined ? null : watermarkOfName(newest)
    const matches =
      current === null || expected === null
        ? current === expected
        : compareWatermarks(current, expected) === 0
    if (!matches) return null
    const name = stateName(next.watermark)
    const bytes = encodeStateFile(doc, next)
    // Storing `expected`'s watermark again replaces that version; a new one must be new.
    return {
      doc,
      folder,
      names,
      name,
      put: { key: `${folder}${name}`, bytes, ifAbsent: name !== newest },
    }
  }

  /**
   * compareAndSet of items whose critical sections are held: decided, their versions put together,
   * then the versions below the newest two collected.
   */
  const storeHeld = async (items: readonly CompareAndSetItem[]): Promise<boolean[]> => {
    const decisions = await mapLimit(items, BATCH_CONCURRENCY, decide)
    const chosen = decisions.filter((d) => d !== null)
    const put = chosen.length === 0 ? [] : await blobs.putMany(chosen.map((d) => d.put))
    const won = new Set(chosen.filter((_, i) => put[i]))
    await mapLimit([...won], BATCH_CONCURRENCY, ({ doc, folder, names, name }) => {
      // Keep the previous version too: a concurrent load may be about to read it.
      const old = [...new Set([...names, name])].sort().slice(0, -2)
      return collect(
        doc,
        old.map((n) => `${folder}${n}`),
      )
    })
    return decisions.map((d) => d !== null && won.has(d))
  }

  const storeOne = (item: CompareAndSetItem): Promise<boolean> =>
    exclusive(escapeDocName(item.doc), async () => (await storeHeld([item]))[0] ?? false)

  /**
   * Every document's lock is tried once; the documents whose locks were free are stored together,
   * the others afterwards, each waiting for its lock while holding no other (so two processes
   * storing overlapping batches never wait for each other).
   */
  const storeMany = async (items: readonly CompareAndSetItem[]): Promise<boolean[]> => {
    const tried = await Promise.allSettled(items.map((i) => lock(escapeDocName(i.doc), false)))
    const unlocks = tried.map((t) => (t.status === 'fulfilled' ? t.value : null))
    let together: boolean[]
    try {
      const failed = tried.find((t) => t.status === 'rejected')
      if (failed) throw failed.reason
      together = await storeHeld(items.filter((_, i) => unlocks[i]))
    } finally {
      await Promise.all(unlocks.flatMap((unlock) => (unlock ? [unlock()] : [])))
    }
    const alone = await mapLimit(
      items.filter((_, i) => !unlocks[i]),
      BATCH_CONCURRENCY,
      storeOne,
    )
    return unlocks.map((unlock) => (unlock ? together.shift() : alone.shift()) ?? false)
  }

  const loadOne = (doc: string) =>
    withNewestState(escapeDocName(doc), async (key) => {
      const bytes = await blobs.get(key)
      return bytes && decodeStateFile(key, bytes).stored
    })

  const checkpointKey = (doc: string, upTo: Watermark) =>
    `${blobs.folders(escapeDocName(doc)).checkpoints}${stateName(upTo)}`

  return {
    kind: opts.kind,
    load: (doc) => guarded('STORAGE_UNAVAILABLE', `cannot read ${doc}`, () => loadOne(doc)),
    loadMany: (docs) =>
      guarded('STORAGE_UNAVAILABLE', `cannot read ${docs.length} documents`, () =>
        mapLimit(docs, BATCH_CONCURRENCY, loadOne),
      ),
    watermark: (doc) =>
      guarded('STORAGE_UNAVAILABLE', `cannot read ${doc}`, async () => {
        const newest = (await stateNames(blobs.folders(escapeDocName(doc)).state)).at(-1)
        return newest === undefined ? null : watermarkOfName(newest)
      }),
    compareAndSet: (doc, expected, next) =>
      guarded('STORAGE_UNAVAILABLE', `cannot store ${doc}`, async () => {
        const item = { doc, expected, next }
        return !goesBack(item) && (await storeOne(item))
      }),
    compareAndSetMany: async (items) => {
      // A caller's mistake, not the storage's: thrown as it is.
      assertDistinctDocs(items)
      return guarded('STORAGE_UNAVAILABLE', `cannot store ${items.length} documents`, async () => {
        const stored = await storeMany(items.filter((i) => !goesBack(i)))
        return items.map((i) => !goesBack(i) && (stored.shift() ?? false))
      })
    },
    ...createObjectLog(blobs),
    putCheckpoint: (doc, { upTo, state }) =>
      guarded('STORAGE_UNAVAILABLE', `cannot store a checkpoint of ${doc}`, async () => {
        const bytes = encodeStateFile(doc, { state, watermark: upTo })
        await blobs.put(checkpointKey(doc, upTo), bytes, { ifAbsent: false })
      }),
    listCheckpoints: (doc) =>
      guarded('STORAGE_UNAVAILABLE', `cannot list the checkpoints of ${doc}`, async () =>
        (await stateNames(blobs.folders(escapeDocName(doc)).checkpoints)).map(watermarkOfName),
      ),
    loadCheckpoint: (doc, upTo) =>
      guarded('STORAGE_UNAVAILABLE', `cannot read a checkpoint of ${doc}`, async () => {
        const key = checkpointKey(doc, upTo)
        const bytes = await blobs.get(key)
        if (bytes === null) return null
        // Named by its upTo, in canonical form (as listCheckpoints gives it).
        const { state } = decodeStateFile(key, bytes).stored
        return { upTo: watermarkOfName(stateName(upTo)), state }
      }),
    dropCheckpoints: (doc, upTos) =>
      guarded('STORAGE_UNAVAILABLE', `cannot drop checkpoints of ${doc}`, async () => {
        if (upTos.length > 0) await blobs.delete(upTos.map((w) => checkpointKey(doc, w)))
      }),
    delete: (doc) =>
      guarded('STORAGE_UNAVAILABLE', `cannot delete ${doc}`, async () => {
        const escaped = escapeDocName(doc)
        await exclusive(escaped, async () => {
          for (const folder of blobs.folders(escaped).all) await blobs.deleteAll(folder)
        })
      }),
    list: (listOpts = {}) =>
      guarded('STORAGE_UNAVAILABLE', 'cannot list documents', () => listDocs('state', listOpts)),
    listHistory: (listOpts = {}) =>
      guarded('STORAGE_UNAVAILABLE', 'cannot list documents with history', () =>
        listDocs('history', listOpts),
      ),
    ping: () => opts.ping(),
    close: () => opts.close(),
  }
}
