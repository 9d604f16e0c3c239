import { ZERO_ID, compareIds, idTimeMs, maxId, type Logger } from '@streambed/common'
import {
  type DocStreams,
  type FinishResult,
  type StoredState,
  type TailRead,
  type Task,
  type TaskQueue,
  readDocument,
} from '@streambed/streams'
import type { Hooks } from './hooks.js'
import type { Merger } from './merger.js'
import type { WorkerMetrics } from './metrics.js'
import type { StorageBatches } from './storage-batches.js'

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
  /** Where compactions load and store: tasks started together share batched calls. */
  batches: StorageBatches
  streams: DocStreams
  queue: TaskQueue
  /** Redis time in ms (queue.now, shared by the deliveries of a batch: shared-clock.ts). */
  now: () => Promise<number>
  merger: Merger
  logger: Logger
  metrics: WorkerMetrics
  hooks: Hooks
  timing: CompactionTiming
  /** Told of each state about to be stored (see WorkerOptions.announce). */
  announce?: (stored: StoredEvent) => Promise<void>
}

/** A document's new stored state: `previous` is the watermark it replaces (null: the first). */
export interface StoredEvent {
  readonly doc: string
  readonly previous: string | null
  readonly watermark: string
}

/**
 * One delivery of a compaction task. The order makes every crash safe:
 *   load storage (W) → read stream after W → merge → archive entries (W, X] → compare-and-set
 *   storage to X → finish: trim entries <= X older than the minimum lifetime, delete the stream if
 *   nothing is left → settle the task.
 * A crash before the compare-and-set leaves storage at W (the entries are still in the stream and
 * the task is still pending); after it, storage holds X and a new delivery finds nothing new.
 * Archiving is idempotent (entries keyed by id), so archiving twice is harmless. Storage is never
 * written without the compare-and-set, so a stored watermark never goes back. The load and the
 * read are `readDocument`, the read server nodes use too (the `after-load` hook runs between them).
 *
 * Deliveries started together (a queue read's tasks) share storage calls: the load, the archive
 * and the compare-and-set of all of them are one call each (storage-batches.ts), each document's
 * compare-and-set decided on its own (a document that lost it alone comes back later). Every step
 * and hook still happens per document in the order above; a document leaves the batch when it
 * has nothing more to store, or before a merge on a worker thread (a large document stores alone
 * rather than hold up the small ones).
 */
export const compactTask = async (deps: CompactorDeps, task: Task): Promise<Outcome> => {
  const { queue, merger, hooks, timing, metrics } = deps
  const { doc, token } = task
  // Joined before the first await: the tasks a dispatch starts together share a batch.
  const storage = deps.batches.join(doc)
  try {
    if ((await queue.liveToken(doc)) !== token) return { settle: 'ack', reason: 'stale' }

    const read = () =>
      readDocument(storage, deps.streams, doc, { afterLoad: () => hooks('after-load', doc) })
    let document = await read()
    // REDIS_WAIT_REPLICAS: entries whose WAIT timed out are read by nobody until confirmed; the
    // worker confirms them (else they would wait for the document's next append).
    if (document.tail.pending && (await deps.streams.confirm(doc))) document = await read()
    const { stored, tail } = document
    const watermark = stored?.watermark ?? ZERO_ID
    let storedUpTo = watermark
    const { entries, anomaly } = await entriesToMerge(deps, doc, stored, tail)
    const first = entries[0]
    const last = entries[entries.length - 1]
    if (first && last) {
      const now = await deps.now()
      const due = Math.min(
        idTimeMs(last.id) + timing.compactIdleMs,
        idTimeMs(first.id) + timing.compactIntervalMs,
      )
      if (now < due && !anomaly) return { settle: 'later', delayMs: due - now, reason: 'not due' }

      const started = performance.now()
      deps.logger.debug({ doc, entries: entries.length, from: watermark }, 'compacting')
      const updates = entries.map((e) => e.update)
      if (merger.threaded(stored?.state ?? null, updates)) storage.leave()
      const state = await merger.merge(stored?.state ?? null, updates)
      await storage.appendLog(doc, entries)
      await hooks('after-archive', doc)
      const next = { state, watermark: maxId(watermark, last.id) }
      // Before the compare-and-set: a crash between the two repeats the announcement, never loses it.
      await deps.announce?.({ doc, previous: stored ? watermark : null, watermark: next.watermark })
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
    // Nothing more to store: the batch need not wait for this document's finish.
    storage.leave()

    await hooks('before-finish', doc)
    const finished = await queue.finish(
      doc,
      token,
      storedUpTo,
      timing.minMessageLifetimeMs,
      timing.tombstoneTtlMs,
    )
    await hooks('after-trim', doc)
    return await outcomeOf(deps, finished)
  } finally {
    storage.leave()
  }
}

/**
 * The entries after the stored watermark, or, when the last id ever appended is below it (Redis
 * lost the document's meta hash and its clock was behind; ids normally only grow), every entry of
 * the stream whatever its id: readers skip such entries and finish-2.lua would trim them unread.
 */
const entriesToMerge = async (
  deps: CompactorDeps,
  doc: string,
  stored: StoredState | null,
  tail: TailRead,
): Promise<{ entries: TailRead['entries']; anomaly: boolean }> => {
  const watermark = stored?.watermark ?? ZERO_ID
  if (stored === null || compareIds(tail.last, watermark) >= 0) {
    return { entries: tail.entries, anomaly: false }
  }
  const { entries } = await deps.streams.readTail(doc, ZERO_ID)
  if (entries.length > 0) {
    deps.logger.error(
      { doc, last: tail.last, watermark, entries: entries.length },
      'stream ids below the stored watermark; merging them all',
    )
  }
  return { entries, anomaly: true }
}

/** What to do with the delivery once finish-2.lua has trimmed (or not) the stream. */
const outcomeOf = async (deps: CompactorDeps, finished: FinishResult): Promise<Outcome> => {
  const { timing, metrics } = deps
  switch (finished.kind) {
    case 'stale':
      return { settle: 'ack', reason: 'stale' }
    case 'done':
      metrics.streamsDeleted.inc()
      return { settle: 'ack', reason: 'done' }
    case 'wait': {
      const now = await deps.now()
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
