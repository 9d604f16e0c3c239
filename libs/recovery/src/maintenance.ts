/**
 * History upkeep, run per document by a scheduled job: checkpoints now and then, the update log's
 * many small batches packed, and history older than the retention folded into checkpoints.
 *
 * Checkpoints form a chain (checkpoint-chain.ts): the oldest a whole state, each later one what
 * changed since the one before, so they cost about what the edits cost. They are thinned by age
 * (checkpoint-spacing.ts): all of today and yesterday, one a day back to the retention (31 days at
 * least), one a week for a year beyond, one per 4 weeks after that.
 *
 * What stays true (history.ts relies on it): documentAt is exact at and after the checkpoint the
 * update log starts after (the log is only ever dropped up to a checkpoint, which stays), and
 * every checkpoint kept, merged with those before it, is a state the document really had. Before
 * that point a document is known at the checkpoints the spacing keeps.
 */
import { AppError, compareIds, guarded, idTimeMs, type StreamId } from '@streambed/common'
import type { Checkpoint, DocStorage } from '@streambed/storage'
import {
  applyThinning,
  chainStateVector,
  checkpointDelta,
  lastAtMost,
  planThinning,
  readChain,
} from './checkpoint-chain.js'
import { DAY_MS, checkpointsToDrop, utcDay } from './checkpoint-spacing.js'
import { allDocuments, inBatches, type RecoveryDeps } from './documents.js'
import { lastIdAt } from './history.js'

export interface MaintenanceSettings {
  /** A new checkpoint when the newest one is older than this (and storage moved on since). */
  checkpointEveryMs: number
  /**
   * History older than this is folded: the log dropped up to a checkpoint; checkpoints are kept
   * one a day at least this far back (checkpoint-spacing.ts).
   */
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
 *    the newest is older than `checkpointEveryMs` and storage moved on since: what the stored
 *    state holds beyond the chain of checkpoints (checkpoint-chain.ts), the whole state for the
 *    first;
 * 2. packLog up to the end of the last UTC day older than `packAfterMs` (the backends merge every
 *    batch up to a bound into one segment, so one segment per run of days, not one per day);
 * 3. dropLog up to the newest checkpoint older than `retentionMs` that the spacing keeps (never
 *    beyond a checkpoint);
 * 4. checkpoints thinned to the spacing (checkpoint-spacing.ts), each thinned one's content moved
 *    into the next one kept first; the oldest, the newest, the one the log was dropped up to and
 *    the one the log starts after stay.
 * Returns what it did. Safe to run concurrently with compaction and readers, and twice.
 */
export const maintainHistory = async (
  deps: { readonly storage: DocStorage },
  doc: string,
  opts: MaintenanceOptions,
): Promise<MaintenanceResult> => {
  checkMaintenanceSettings(opts)
  const { storage } = deps
  const { nowMs, retentionMs } = opts
  return guarded('STORAGE_UNAVAILABLE', `history maintenance of ${doc}`, async () => {
    let checkpoints = await storage.listCheckpoints(doc)
    /** The whole chain, loaded once when a step needs it. */
    let chain: Checkpoint[] | null = null
    let checkpoint: StreamId | null = null
    const newest = checkpoints.at(-1)
    const watermark = await storage.watermark(doc)
    const due =
      newest === undefined ||
      (nowMs - idTimeMs(newest) > opts.checkpointEveryMs &&
        compareIds(watermark ?? newest, newest) > 0)
    if (watermark !== null && due) {
      const stored = await storage.load(doc)
      chain = await readChain(storage, doc)
      const last = chain.at(-1)
      // A concurrent run may have written it meanwhile.
      if (stored && (last === undefined || compareIds(stored.watermark, last.upTo) > 0)) {
        const next = {
          upTo: stored.watermark,
          state: checkpointDelta(stored.state, chainStateVector(chain)),
        }
        await storage.putCheckpoint(doc, next)
        checkpoint = stored.watermark
        chain.push(next)
      }
      checkpoints = chain.map((c) => c.upTo)
    }

    const packDay = utcDay(nowMs - opts.packAfterMs)
    const packed = await storage.packLog(doc, lastIdAt(packDay * DAY_MS - 1))

    const boundary = nowMs - retentionMs
    const spaced = new Set(checkpointsToDrop(checkpoints, { nowMs, retentionMs }))
    const foldTo = checkpoints.findLast((c) => idTimeMs(c) <= boundary && !spaced.has(c))
    const extent = await storage.logExtent(doc)
    // documentAt replays the log after the last checkpoint at or before its first entry.
    const horizon = extent ? lastAtMost(checkpoints, extent.first) : null
    let droppedLogUpTo: StreamId | null = null
    if (foldTo !== undefined && extent && compareIds(extent.first, foldTo) <= 0) {
      await storage.dropLog(doc, foldTo)
      droppedLogUpTo = foldTo
    }

    // What documentAt replays the log after stays: foldTo when the log was dropped up to it (the
    // horizon was at or before it), else the horizon.
    const keep = [foldTo, droppedLogUpTo === null ? horizon : null].filter(
      (c): c is StreamId => c !== undefined && c !== null,
    )
    let droppedCheckpoints = checkpointsToDrop(checkpoints, { nowMs, retentionMs, keep })
    if (droppedCheckpoints.length > 0) {
      if (!chain) {
        chain = await readChain(storage, doc)
        // Listed again: plan on what is there now (a concurrent run may have thinned some).
        droppedCheckpoints = checkpointsToDrop(
          chain.map((c) => c.upTo),
          { nowMs, retentionMs, keep },
        )
      }
      await applyThinning(storage, doc, planThinning(chain, new Set(droppedCheckpoints)))
    }
    return { doc, checkpoint, packed, droppedLogUpTo, droppedCheckpoints }
  })
}

/** The documents history maintenance goes over (stored state ∪ history), in batches. */
export const planMaintenance = async (
  deps: RecoveryDeps,
  opts: { batchSize?: number } = {},
): Promise<string[][]> =>
  inBatches(await allDocuments(deps, { streams: false }), opts.batchSize ?? 100)
