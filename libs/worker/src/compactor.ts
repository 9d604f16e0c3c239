import {
  AppError,
  ZERO_ID,
  compareIds,
  describeError,
  idTimeMs,
  maxId,
  type Logger,
} from '@streambed/common'
import type { DocStorage, StoredDoc } from '@streambed/storage'
import { type DocStreams, type Task, type TaskQueue, hasHoleAfter } from '@streambed/streams'
import type { Hooks } from './hooks.js'
import type { Merger } from './merger.js'
import type { WorkerMetrics } from './metrics.js'

export interface CompactionTiming {
  /** A document that keeps changing is compacted at most this often. */
  compactIntervalMs: number
  /** A document is compacted this long after its last change. */
  compactIdleMs: number
  /** Entries stay in the stream at least this long after being written (for lagging readers). */
  minMessageLifetimeMs: number
  /** How long the meta hash of a deleted stream stays (it keeps ids monotonic). */
  tombstoneTtlMs: number
}

/** What to do with the delivery: acknowledge it, or put the task back for `delayMs`. */
export type Outcome =
  | { readonly settle: 'ack'; readonly reason: string }
  | { readonly settle: 'later'; readonly delayMs: number; readonly reason: string }

export interface CompactorDeps {
  storage: DocStorage
  streams: DocStreams
  queue: TaskQueue
  merger: Merger
  logger: Logger
  metrics: WorkerMetrics
  hooks: Hooks
  timing: CompactionTiming
}

/**
 * One delivery of a compaction task. The order makes every crash safe:
 *   load storage (W) → read stream after W → merge → archive entries (W, X] → compare-and-set
 *   storage to X → finish: trim entries <= X older than the minimum lifetime, delete the stream if
 *   nothing is left → settle the task.
 * A crash before the compare-and-set leaves storage at W (the entries are still in the stream and
 * the task is still pending); after it, storage holds X and a new delivery finds nothing new.
 * Archiving is idempotent (entries keyed by id), so archiving twice is harmless. Storage is never
 * written without the compare-and-set, so a stored watermark never goes back.
 */
export const compactTask = async (deps: CompactorDeps, task: Task): Promise<Outcome> => {
  const { storage, streams, queue, merger, hooks, timing, metrics } = deps
  const { doc, token } = task
  if ((await queue.liveToken(doc)) !== token) return { settle: 'ack', reason: 'stale' }

  let stored: StoredDoc | null = null
  let tail = null
  for (let attempt = 0; attempt < 5 && tail === null; attempt++) {
    stored = await storage.load(doc)
    await hooks('after-load', doc)
    const read = await streams.readTail(doc, stored?.watermark ?? ZERO_ID)
    // Another delivery stored and trimmed meanwhile: storage is ahead now, load again.
    if (!hasHoleAfter(stored?.watermark ?? ZERO_ID, read.trimmed)) tail = read
  }
  if (tail === null) throw new AppError('STREAM_GAP', `${doc} kept being compacted by others`)

  const watermark = stored?.watermark ?? ZERO_ID
  let storedUpTo = watermark
  let entries = tail.entries
  // The last id ever appended is below the stored watermark: Redis lost the document's meta hash
  // and its clock was behind (ids normally only grow). Readers skip such entries and finish-2.lua
  // would trim them unread: merge every entry of the stream instead, whatever its id.
  const anomaly = stored !== null && compareIds(tail.last, watermark) < 0
  if (anomaly) {
    entries = (await streams.readTail(doc, ZERO_ID)).entries
    if (entries.length > 0) {
      deps.logger.error(
        { doc, last: tail.last, watermark, entries: entries.length },
        'stream ids below the stored watermark; merging them all',
      )
    }
  }
  const first = entries[0]
  const last = entries[entries.length - 1]
  if (first && last) {
    const now = await queue.now()
    const due = Math.min(
      idTimeMs(last.id) + timing.compactIdleMs,
      idTimeMs(first.id) + timing.compactIntervalMs,
    )
    if (now < due && !anomaly) return { settle: 'later', delayMs: due - now, reason: 'not due' }

    const started = performance.now()
    deps.logger.debug({ doc, entries: entries.length, from: watermark }, 'compacting')
    const state = await merger.merge(
      stored?.state ?? null,
      entries.map((e) => e.update),
    )
    await storage.appendLog(doc, entries)
    await hooks('after-archive', doc)
    const next = { state, watermark: maxId(watermark, last.id) }
    if (!(await storage.compareAndSet(doc, stored ? watermark : null, next))) {
      metrics.conflicts.inc()
      return { settle: 'later', delayMs: 50, reason: 'conflict' }
    }
    await hooks('after-persist', doc)
    storedUpTo = next.watermark
    metrics.compactions.inc()
    metrics.compactedEntries.inc(entries.length)
    metrics.snapshotBytes.inc(state.length)
    metrics.compactionSeconds.observe((performance.now() - started) / 1000)
    deps.logger.debug(
      { doc, entries: entries.length, bytes: state.length, upTo: next.watermark },
      'compacted',
    )
  }

  await hooks('before-finish', doc)
  const finished = await queue.finish(
    doc,
    token,
    storedUpTo,
    timing.minMessageLifetimeMs,
    timing.tombstoneTtlMs,
  )
  await hooks('after-trim', doc)
  switch (finished.kind) {
    case 'stale':
      return { settle: 'ack', reason: 'stale' }
    case 'done':
      metrics.streamsDeleted.inc()
      return { settle: 'ack', reason: 'done' }
    case 'wait': {
      const now = await queue.now()
      return {
        settle: 'later',
        delayMs: idTimeMs(finished.oldestId) + timing.minMessageLifetimeMs - now + 5,
        reason: 'trim later',
      }
    }
    case 'dirty':
      return {
        settle: 'later',
        delayMs: Math.min(timing.compactIdleMs, timing.compactIntervalMs),
        reason: 'changed meanwhile',
      }
  }
}

/** Backoff for a document whose compaction failed `failures` times in a row. */
export const retryDelayMs = (failures: number): number =>
  Math.min(250 * 2 ** Math.max(0, failures - 1), 30_000)

export const errorCode = (err: unknown): string => describeError(err).code
