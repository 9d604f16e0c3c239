/**
 * After Redis lost data (no AOF, a failover to an empty replica, FLUSHALL): stream entries that
 * compaction had archived to the update log but not yet stored are gone from Redis and missing
 * from the stored state. Replay appends them again through the normal write path
 * (`streams.append`): connected clients receive them, and the clock map strips what the document
 * has already (a client that resent its edits after the loss, or a replay run before), so running
 * it twice is harmless. Entries get new ids (Redis time now); their order is kept.
 *
 * From a backup instead of the log: the backup's tail (entries Redis held, never archived) and its
 * log, above the stored watermark.
 */
import {
  AppError,
  compareIds,
  guarded,
  idTimeMs,
  maxId,
  type StreamId,
  ZERO_ID,
} from '@streambed/common'
import { addsNothing, createSyncBaseline, mergeAll, type SyncBaseline } from '@streambed/protocol'
import type { LogEntry } from '@streambed/storage'
import { partsOf, readDocument } from '@streambed/streams'
import type { BackupTarget } from './backup-target.js'
import type { BackupEntry } from './backup.js'
import { allDocuments, inBatches, type RecoveryDeps } from './documents.js'
import { lastIdAt } from './history.js'
import { describeProblems, loadDocument } from './manifest.js'

export interface ReplayOptions {
  /** Replay only entries written at or before this time (epoch ms). */
  untilMs?: number
  /** Replay the document's entries from this backup (its manifest entry) instead of the log. */
  fromBackup?: { readonly src: BackupTarget; readonly entry: BackupEntry }
  /** Origin of the appended entries; default `recovery/replay`. */
  origin?: string
}

export interface ReplayResult {
  readonly doc: string
  /** The stored watermark: entries above it were candidates. */
  readonly watermark: StreamId | null
  /** Entries above the watermark (and up to untilMs) in the source. */
  readonly candidates: number
  /** Appended with new content. */
  readonly appended: number
  /** The document had all of it already (nothing appended). */
  readonly unchanged: number
  /** Id of the last entry appended, or null. */
  readonly lastId: StreamId | null
}

/** Ascending entries of both lists, each id once. */
const mergeById = (a: readonly LogEntry[], b: readonly LogEntry[]): LogEntry[] => {
  const byId = new Map<string, LogEntry>()
  for (const e of [...a, ...b]) if (!byId.has(e.id)) byId.set(e.id, e)
  return [...byId.values()].sort((x, y) => compareIds(x.id, y.id))
}

/**
 * Appends the entries of `doc`'s update log (or of a backup) that storage does not hold, in id
 * order, through `streams.append`. Throws `BAD_MESSAGE` when a backup file is damaged or an entry
 * would leave a gap in a client's clocks (the history is missing updates before it), and the
 * dependency codes when Redis or storage fail.
 */
export const replayDocument = async (
  deps: RecoveryDeps,
  doc: string,
  opts: ReplayOptions = {},
): Promise<ReplayResult> => {
  const { storage, streams } = deps
  const watermark = await guarded('STORAGE_UNAVAILABLE', `watermark of ${doc}`, () =>
    storage.watermark(doc),
  )
  const after = watermark ?? ZERO_ID
  const upTo = opts.untilMs === undefined ? undefined : lastIdAt(opts.untilMs)
  let entries: LogEntry[]
  if (opts.fromBackup) {
    const { src, entry } = opts.fromBackup
    const loaded = await loadDocument(src, entry)
    if (Array.isArray(loaded))
      throw new AppError('BAD_MESSAGE', describeProblems(src.location, loaded))
    entries = mergeById(loaded.log, loaded.tail).filter(
      (e) => compareIds(e.id, after) > 0 && (upTo === undefined || compareIds(e.id, upTo) <= 0),
    )
  } else {
    entries = await guarded('STORAGE_UNAVAILABLE', `read the update log of ${doc}`, () =>
      storage.readLog(doc, upTo === undefined ? { after } : { after, upTo }),
    )
  }
  const origin = opts.origin ?? 'recovery/replay'
  let floor = after
  let appended = 0
  let lastId: StreamId | null = null
  // What the document holds now: entries adding nothing to it are skipped (a replay run before, or
  // clients that resent their edits). The clock map would strip their structs anyway, but not
  // their delete sets, which would be appended again each time.
  let baseline: SyncBaseline | null = null
  if (entries.length > 0) {
    const read = await readDocument(storage, streams, doc)
    baseline = createSyncBaseline(mergeAll(partsOf(read)))
    floor = maxId(floor, read.upTo)
  }
  for (const e of entries) {
    if (baseline && addsNothing(e.update, baseline)) continue
    let result
    try {
      result = await streams.append(doc, e.update, origin, { floor })
    } catch (err) {
      if (err instanceof AppError && err.code === 'BAD_MESSAGE')
        throw new AppError(
          'BAD_MESSAGE',
          `replay of ${doc} stopped at entry ${e.id} (${new Date(idTimeMs(e.id)).toISOString()}): ` +
            `${err.message}`,
          { cause: err },
        )
      throw err
    }
    if (result) {
      appended++
      lastId = result.id
      floor = maxId(floor, result.id)
    }
  }
  return {
    doc,
    watermark,
    candidates: entries.length,
    appended,
    unchanged: entries.length - appended,
    lastId,
  }
}

export interface PlanReplayOptions {
  /** These documents only; default every document with history or stored state. */
  docs?: readonly string[]
  /** Documents per batch; default 50. */
  batchSize?: number
}

/** The documents to replay (history ∪ stored state, or `docs`), in batches. */
export const planReplay = async (
  deps: RecoveryDeps,
  opts: PlanReplayOptions = {},
): Promise<string[][]> => {
  const docs = opts.docs
    ? [...new Set(opts.docs)].sort()
    : await allDocuments(deps, { streams: false })
  return inBatches(docs, opts.batchSize ?? 50)
}
