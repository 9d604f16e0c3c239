/**
 * History upkeep, run per document by a scheduled job: checkpoints now and then, the update log's
 * many small batches packed, and history older than the retention folded into checkpoints.
 *
 * What stays true (history.ts relies on it): documentAt is exact at and after the newest
 * checkpoint the log was dropped up to (the log is only ever dropped up to a checkpoint), and
 * every checkpoint kept is a state the document really had. Before that point a document is known
 * at one checkpoint per UTC day.
 */
import { AppError, compareIds, guarded, idTimeMs, type StreamId } from '@streambed/common'
import type { DocStorage } from '@streambed/storage'
import { allDocuments, inBatches, type RecoveryDeps } from './documents.js'
import { lastIdAt } from './history.js'

const DAY_MS = 86_400_000

export interface MaintenanceSettings {
  /** A new checkpoint when the newest one is older than this (and storage moved on since). */
  checkpointEveryMs: number
  /** History older than this is folded: the log dropped up to a checkpoint, checkpoints thinned. */
  retentionMs: number
  /** Log batches older than this (whole UTC days) are packed into a segment. */
  packAfterMs: number
}

export interface MaintenanceOptions extends MaintenanceSettings {
  /** Now (epoch ms; Redis time, which entry ids carry). */
  nowMs: number
}

export interface MaintenanceResult {
  readonly doc: string
  /** The checkpoint written (its upTo), or null. */
  readonly checkpoint: StreamId | null
  /** Log objects packed into a segment (0: nothing to pack, or a backend without objects). */
  readonly packed: number
  /** The log was dropped up to this checkpoint, or null when nothing was dropped. */
  readonly droppedLogUpTo: StreamId | null
  /** Checkpoints removed by thinning. */
  readonly droppedCheckpoints: StreamId[]
}

const utcDay = (ms: number) => Math.floor(ms / DAY_MS)

/** Throws `AppError('CONFIG')` unless the settings make sense. */
export const checkMaintenanceSettings = (s: MaintenanceSettings): void => {
  const { checkpointEveryMs, retentionMs, packAfterMs } = s
  for (const [name, v] of Object.entries({ checkpointEveryMs, retentionMs, packAfterMs }))
    if (!(typeof v === 'number' && Number.isFinite(v) && v >= 0))
      throw new AppError('CONFIG', `history maintenance: ${name} must be a duration in ms >= 0`)
  if (s.retentionMs < s.checkpointEveryMs)
    throw new AppError(
      'CONFIG',
      'history maintenance: retentionMs must be at least checkpointEveryMs (history older than ' +
        'the retention is folded into checkpoints, so one must be that old)',
    )
}

/**
 * One round of history upkeep for `doc`, in this order:
 * 1. a checkpoint of the stored state (the document at its watermark) when there is none yet, or
 *    the newest is older than `checkpointEveryMs` and storage moved on since;
 * 2. packLog up to the end of the last UTC day older than `packAfterMs` (the backends merge every
 *    batch up to a bound into one segment, so one segment per run of days, not one per day);
 * 3. dropLog up to the newest checkpoint older than `retentionMs` (never beyond a checkpoint);
 * 4. checkpoints older than `retentionMs` thinned to the newest of each UTC day.
 * Returns what it did. Safe to run concurrently with compaction and readers, and twice.
 */
export const maintainHistory = async (
  deps: { readonly storage: DocStorage },
  doc: string,
  opts: MaintenanceOptions,
): Promise<MaintenanceResult> => {
  checkMaintenanceSettings(opts)
  const { storage } = deps
  const { nowMs } = opts
  return guarded('STORAGE_UNAVAILABLE', `history maintenance of ${doc}`, async () => {
    const checkpoints = await storage.listCheckpoints(doc)
    let checkpoint: StreamId | null = null
    const newest = checkpoints.at(-1)
    const watermark = await storage.watermark(doc)
    const due =
      newest === undefined ||
      (nowMs - idTimeMs(newest) > opts.checkpointEveryMs &&
        compareIds(watermark ?? newest, newest) > 0)
    if (watermark !== null && due) {
      const stored = await storage.load(doc)
      if (stored) {
        await storage.putCheckpoint(doc, { upTo: stored.watermark, state: stored.state })
        checkpoint = stored.watermark
        checkpoints.push(stored.watermark)
      }
    }

    const packDay = utcDay(nowMs - opts.packAfterMs)
    const packed = await storage.packLog(doc, lastIdAt(packDay * DAY_MS - 1))

    const boundary = nowMs - opts.retentionMs
    const old = checkpoints.filter((c) => idTimeMs(c) <= boundary)
    const foldTo = old.at(-1)
    let droppedLogUpTo: StreamId | null = null
    if (foldTo !== undefined) {
      const extent = await storage.logExtent(doc)
      if (extent && compareIds(extent.first, foldTo) <= 0) {
        await storage.dropLog(doc, foldTo)
        droppedLogUpTo = foldTo
      }
    }

    // The newest checkpoint of each UTC day among the old ones stays (foldTo among them).
    const droppedCheckpoints = old.filter((c, i) => {
      const next = old[i + 1]
      return next !== undefined && utcDay(idTimeMs(next)) === utcDay(idTimeMs(c))
    })
    if (droppedCheckpoints.length > 0) await storage.dropCheckpoints(doc, droppedCheckpoints)
    return { doc, checkpoint, packed, droppedLogUpTo, droppedCheckpoints }
  })
}

/** The documents history maintenance goes over (stored state ∪ history), in batches. */
export const planMaintenance = async (
  deps: RecoveryDeps,
  opts: { batchSize?: number } = {},
): Promise<string[][]> =>
  inBatches(await allDocuments(deps, { streams: false }), opts.batchSize ?? 100)
