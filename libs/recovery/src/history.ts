/**
 * A document as it was at any time, its versions, and restoring one.
 *
 * A document's history lives in three places, each complete over a range of entry ids:
 *   checkpoints   the document up to an id (`upTo`), kept so the log before it can be dropped: a
 *                 chain, each holding what changed since the one before (checkpoint-chain.ts), so
 *                 the document at one is every checkpoint up to it applied in order
 *   update log    every entry archived by compaction, from its first entry on; dropLog removes a
 *                 prefix only after a checkpoint holds it, so the log is complete after the latest
 *                 checkpoint at or below its first entry (the horizon), or from the document's
 *                 start when no checkpoint is that old
 *   stream tail   every entry after the stored watermark (read first: compaction archives entries
 *                 before it stores and trims them, so a log read after the tail read misses none)
 * and the stored state, which holds every entry up to its watermark.
 *
 * The document at time T holds every entry whose id time is <= T: the latest checkpoint at or
 * before T with the chain before it (the stored state when T is past its watermark), then the
 * entries after it up to T from the log and the tail, deduplicated by id and applied in id order
 * to a Y.Doc (with garbage collection, as compaction does). Before the horizon the log is gone and
 * only checkpoints remain: there the answer is the latest checkpoint before T, `exact: false`,
 * `asOf` its time. Applying a chain costs about what applying one whole state does (its bytes are
 * about one document's); like the log replay after it, it runs where documentAt is called — for
 * the HTTP history API, on a server node's event loop.
 */
import * as Y from 'yjs'
import { AppError, compareIds, idTimeMs, maxId, type StreamId, ZERO_ID } from '@streambed/common'
import type { DocStorage, LogEntry } from '@streambed/storage'
import {
  type AppendResult,
  type DocStreams,
  type DocumentRead,
  partsOf,
  readDocument,
  type StreamEntry,
} from '@streambed/streams'
import { applyChain, lastAtMost, loadCheckpoints } from './checkpoint-chain.js'
import { restoreUpdateOfDocs } from './restore-content.js'
import { formatTime } from './time.js'

/** What history reads: storage (state, log, checkpoints) and the document's stream. */
export interface HistorySource {
  readonly storage: Pick<
    DocStorage,
    'load' | 'readLog' | 'logExtent' | 'listCheckpoints' | 'loadCheckpoint'
  >
  readonly streams: DocStreams
}

/** The largest sequence part of a stream id (Redis ids are two 64-bit numbers). */
const MAX_SEQ = '18446744073709551615'

/** The highest id whose time is `ms`: entries "at or before ms" are the ids <= it. */
export const lastIdAt = (ms: number): StreamId => `${Math.floor(ms)}-${MAX_SEQ}`

const above = (a: StreamId, b: StreamId) => compareIds(a, b) > 0
const atMost = (a: StreamId, b: StreamId) => compareIds(a, b) <= 0

/** Ascending entries of both lists, each id once (the log and the tail overlap until trimmed). */
const mergeById = (a: readonly LogEntry[], b: readonly LogEntry[]): LogEntry[] => {
  const out: LogEntry[] = []
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    const x = a[i]
    const y = b[j]
    const c = x === undefined ? 1 : y === undefined ? -1 : compareIds(x.id, y.id)
    if (c <= 0) {
      out.push(x as LogEntry)
      i++
      if (c === 0) j++
    } else {
      out.push(y as LogEntry)
      j++
    }
  }
  return out
}

/**
 * `bases` (a stored state, or a chain of checkpoints) then `updates` applied in order to one
 * Y.Doc. A transaction per update, as compaction does: one transaction around all of them is twice
 * as slow (100 000 typing updates: 1.3 s against 0.6 s), since Yjs merges the small items it
 * integrates only when a transaction ends.
 */
const replay = (
  bases: readonly { readonly state: Uint8Array }[],
  updates: readonly Uint8Array[],
): Y.Doc => {
  const ydoc = new Y.Doc()
  applyChain(ydoc, bases)
  for (const u of updates) Y.applyUpdate(ydoc, u)
  return ydoc
}

export interface DocumentAt {
  /** The document as one Yjs v1 update. */
  readonly state: Uint8Array
  /** `state` holds every entry with an id <= upTo (the last one applied, or its checkpoint's). */
  readonly upTo: StreamId
  /** False when the history at the time asked for was folded into an earlier checkpoint. */
  readonly exact: boolean
  /** The time (epoch ms) the document is as of: the time asked for when exact. */
  readonly asOf: number
  /** What the replay started from. */
  readonly base: 'stored' | 'checkpoint' | 'none'
  /** Entries applied after the base. */
  readonly replayed: number
}

export interface DocumentAtOptions {
  /** A read of the document (`readDocument`) made just now, to use instead of reading again. */
  read?: DocumentRead
}

/** How often documentAt lists checkpoints again when the one it chose is dropped meanwhile. */
const CHECKPOINT_ATTEMPTS = 3

/**
 * The document `doc` as it was at `atMs` (epoch ms): every entry whose id time is <= atMs, rebuilt
 * from the latest checkpoint before it and the entries after. Throws `AppError('NOT_FOUND')` when
 * the document has no history, when atMs is before its history starts, or when entries the
 * replay needs are missing; `STORAGE_UNAVAILABLE` / `REDIS_UNAVAILABLE` when a dependency fails.
 */
export const documentAt = async (
  source: HistorySource,
  doc: string,
  atMs: number,
  opts: DocumentAtOptions = {},
): Promise<DocumentAt> => {
  const { ydoc, ...result } = await rebuildAt(source, doc, atMs, opts)
  try {
    return { ...result, state: Y.encodeStateAsUpdate(ydoc) }
  } finally {
    ydoc.destroy()
  }
}

type Rebuilt = Omit<DocumentAt, 'state'> & { ydoc: Y.Doc }

/** documentAt's document as a Y.Doc (the caller destroys it). */
const rebuildAt = async (
  source: HistorySource,
  doc: string,
  atMs: number,
  opts: DocumentAtOptions,
): Promise<Rebuilt> => {
  if (!Number.isFinite(atMs))
    throw new AppError('BAD_MESSAGE', `not a time in milliseconds: ${atMs}`)
  const { storage, streams } = source
  const bound = lastIdAt(Math.max(0, atMs))
  const read = opts.read ?? (await readDocument(storage, streams, doc))
  const { stored } = read
  const tail: readonly StreamEntry[] = read.tail.entries
  const upToBound = (entries: readonly LogEntry[], after: StreamId, until: StreamId) =>
    entries.filter((e) => above(e.id, after) && atMost(e.id, until))

  // Past the stored watermark: the stored state and the tail, no log needed.
  if (stored && atMost(stored.watermark, bound)) {
    const entries = upToBound(tail, stored.watermark, bound)
    const updates = entries.map((e) => e.update)
    return finish(doc, replay([stored], updates), {
      upTo: entries.at(-1)?.id ?? stored.watermark,
      exact: true,
      asOf: atMs,
      base: 'stored',
      replayed: entries.length,
    })
  }

  for (let attempt = 1; ; attempt++) {
    const [checkpoints, extent] = await Promise.all([
      storage.listCheckpoints(doc),
      storage.logExtent(doc),
    ])
    const tailFrom = stored?.watermark ?? ZERO_ID
    const horizon = extent ? (lastAtMost(checkpoints, extent.first) ?? ZERO_ID) : null
    const checkpoint = lastAtMost(checkpoints, bound)
    const base = checkpoint ?? ZERO_ID
    // The end of the complete history after `base`: everything when the tail (or the log, then
    // the tail) reaches on from it; else the log's last entry; else nothing after the base.
    let coverEnd: StreamId | null = base
    if (atMost(tailFrom, base)) coverEnd = null
    else if (extent && horizon !== null && atMost(horizon, base))
      coverEnd = atMost(tailFrom, extent.last) ? null : extent.last
    const end = coverEnd === null || atMost(bound, coverEnd) ? bound : coverEnd
    const exact = end === bound
    const fromLog =
      extent && horizon !== null && atMost(horizon, base) && above(end, base)
        ? await storage.readLog(doc, { after: base, upTo: end })
        : []
    const entries = mergeById(fromLog, upToBound(tail, base, end))
    if (checkpoint === null && entries.length === 0)
      throw noHistoryAt(doc, atMs, { checkpoints, extent, horizon, read })
    // The checkpoint is the chain up to it (checkpoint-chain.ts).
    let chain: readonly { readonly state: Uint8Array }[] = []
    if (checkpoint !== null) {
      const upTos = checkpoints.filter((c) => atMost(c, checkpoint))
      const loaded = await loadCheckpoints(storage, doc, upTos)
      if (!loaded) {
        // One was thinned since the listing (a later one holds its content): list again.
        if (attempt < CHECKPOINT_ATTEMPTS) continue
        throw new AppError(
          'STORAGE_UNAVAILABLE',
          `checkpoints of ${doc} kept being dropped while being read`,
        )
      }
      chain = loaded
    }
    const updates = entries.map((e) => e.update)
    return finish(doc, replay(chain, updates), {
      upTo: entries.at(-1)?.id ?? base,
      exact,
      asOf: exact ? atMs : idTimeMs(end),
      base: checkpoint === null ? 'none' : 'checkpoint',
      replayed: entries.length,
    })
  }
}

/** The replayed document with what it is; NOT_FOUND if the replay lacked entries it needed. */
const finish = (doc: string, ydoc: Y.Doc, result: Omit<Rebuilt, 'ydoc'>): Rebuilt => {
  if (ydoc.store.pendingStructs !== null || ydoc.store.pendingDs !== null) {
    ydoc.destroy()
    throw new AppError(
      'NOT_FOUND',
      `the history of ${doc} up to ${formatTime(result.asOf)} has a hole: updates it builds on ` +
        'are missing from its checkpoints and update log (a log dropped without a checkpoint, ' +
        'or archived only from some time on)',
    )
  }
  return { ...result, ydoc }
}

/** NOT_FOUND for a time before the document's history starts (or a document without history). */
const noHistoryAt = (
  doc: string,
  atMs: number,
  known: {
    checkpoints: readonly StreamId[]
    extent: { first: StreamId } | null
    horizon: StreamId | null
    read: DocumentRead
  },
): AppError => {
  // Where history starts, and whether that point is the document's first entry.
  const starts: [StreamId, boolean][] = []
  const first = known.checkpoints[0]
  if (first !== undefined) starts.push([first, false])
  if (known.extent && known.horizon === ZERO_ID) starts.push([known.extent.first, true])
  if (known.read.stored) starts.push([known.read.stored.watermark, false])
  else {
    const firstTail = known.read.tail.entries[0]
    if (firstTail) starts.push([firstTail.id, true])
  }
  starts.sort(([a], [b]) => compareIds(a, b))
  const start = starts[0]
  if (!start) return new AppError('NOT_FOUND', `document ${doc} has no history`)
  const [id, isFirstEntry] = start
  return new AppError(
    'NOT_FOUND',
    isFirstEntry
      ? `document ${doc} did not exist at ${formatTime(atMs)}; its history starts at ` +
          `${formatTime(idTimeMs(id))}`
      : `document ${doc} has no history at ${formatTime(atMs)}; its history starts at ` +
          `${formatTime(idTimeMs(id))} (what came before was folded into that state)`,
    { details: { startsAt: idTimeMs(id) } },
  )
}

/** Entries appended within one bucket of time: restoring to `at` gives the document after them. */
export interface HistoryBucket {
  /** The time of the bucket's last entry (epoch ms). */
  readonly at: number
  /** The bucket's last entry. */
  readonly upTo: StreamId
  readonly entries: number
  readonly bytes: number
  readonly checkpoint?: false
}

/** A checkpoint: the document as of `upTo`, kept where the log before it may be gone. */
export interface HistoryCheckpoint {
  readonly at: number
  readonly upTo: StreamId
  readonly checkpoint: true
}

export type HistoryVersion = HistoryBucket | HistoryCheckpoint

export interface HistoryListing {
  /** Ascending by upTo (a checkpoint after the bucket ending at the same id); the newest kept. */
  readonly versions: HistoryVersion[]
  /** Older versions left out by the limit. */
  readonly omitted: number
}

export interface HistoryOptions {
  /** Entries within one bucket make one version; default 60 000 (a minute). */
  bucketMs?: number
  /** Versions listed at most (the newest); default 1000. */
  limit?: number
}

/**
 * The versions of `doc` an application can offer: one per bucket of time that has entries (from
 * the update log and the stream), and the checkpoints; ascending, the newest `limit`. Reads every
 * entry id the log holds (and the entries' bytes: the log has no index without them).
 */
export const historyOf = async (
  source: HistorySource,
  doc: string,
  opts: HistoryOptions = {},
): Promise<HistoryListing> => {
  const bucketMs = opts.bucketMs ?? 60_000
  const limit = opts.limit ?? 1000
  if (!(bucketMs >= 1) || !Number.isInteger(limit) || limit < 0)
    throw new AppError('BAD_MESSAGE', `history buckets must be >= 1 ms and the limit >= 0`)
  // The stream first (see the module comment); the stored state it loads goes unused.
  const tail = (await readDocument(source.storage, source.streams, doc)).tail.entries
  const [log, checkpoints] = await Promise.all([
    source.storage.readLog(doc),
    source.storage.listCheckpoints(doc),
  ])
  const versions: HistoryVersion[] = []
  let bucket: { key: number; at: number; upTo: StreamId; entries: number; bytes: number } | null =
    null
  let c = 0
  /** Lists the checkpoints below `id` (all that are left for null). */
  const checkpointsBelow = (id: StreamId | null) => {
    for (; c < checkpoints.length; c++) {
      const upTo = checkpoints[c] as StreamId
      if (id !== null && !above(id, upTo)) break
      versions.push({ at: idTimeMs(upTo), upTo, checkpoint: true })
    }
  }
  const close = () => {
    if (!bucket) return
    checkpointsBelow(bucket.upTo)
    const { at, upTo, entries, bytes } = bucket
    versions.push({ at, upTo, entries, bytes })
    bucket = null
  }
  for (const e of mergeById(log, tail)) {
    const ms = idTimeMs(e.id)
    const key = Math.floor(ms / bucketMs)
    if (bucket && bucket.key !== key) close()
    bucket ??= { key, at: ms, upTo: e.id, entries: 0, bytes: 0 }
    bucket.at = ms
    bucket.upTo = e.id
    bucket.entries++
    bucket.bytes += e.update.byteLength
  }
  close()
  checkpointsBelow(null)
  const omitted = Math.max(0, versions.length - limit)
  return { versions: versions.slice(omitted), omitted }
}

export interface RestoreResult {
  /** The entry the restore appended; null when the document already showed that content. */
  readonly appended: AppendResult | null
  /** The time (epoch ms) the restored content is as of (earlier than asked for when folded). */
  readonly asOf: number
  /** False when the history at the time asked for was folded into an earlier checkpoint. */
  readonly exact: boolean
  /** The restored content holds every entry with an id <= this. */
  readonly upTo: StreamId
}

/**
 * Gives `doc` the content it had at `atMs`, as a forward update appended to its stream (connected
 * clients receive it like any edit; the edits it undoes stay in the stream and the log). Appends
 * nothing when the content is the same. `origin` names the writer in the stream entry.
 */
export const restoreDocument = async (
  source: HistorySource,
  doc: string,
  atMs: number,
  origin: string,
): Promise<RestoreResult> => {
  const read = await readDocument(source.storage, source.streams, doc)
  const target = await rebuildAt(source, doc, atMs, { read })
  const current = replay([], partsOf(read))
  let update: Uint8Array | null
  try {
    update = restoreUpdateOfDocs(current, target.ydoc)
  } finally {
    current.destroy()
    target.ydoc.destroy()
  }
  const appended = update
    ? await source.streams.append(doc, update, origin, { floor: maxId(read.upTo, target.upTo) })
    : null
  return { appended, asOf: target.asOf, exact: target.exact, upTo: target.upTo }
}
