import { type Logger, type Loop, runLoop } from '@streambed/common'
import type { TaskQueue } from '@streambed/streams'
import type { WorkerMetrics } from './metrics.js'
import type { TaskDispatcher } from './task-dispatcher.js'

export interface QueueLoopOptions {
  /** Consumer name in the group; unique per worker process. */
  consumer: string
  queue: TaskQueue
  dispatcher: TaskDispatcher
  logger: Logger
}

/** Reads new tasks whenever the dispatcher has a free slot (XREADGROUP, blocking `blockMs`). */
export const readLoop = (opts: QueueLoopOptions & { blockMs: number }): Loop => {
  const { consumer, queue, dispatcher } = opts
  return runLoop(
    async (signal) => {
      await dispatcher.waitForSlot()
      if (signal.aborted || dispatcher.closed) return
      dispatcher.accept(await queue.read(consumer, dispatcher.freeSlots(), opts.blockMs))
    },
    { name: 'read tasks', logger: opts.logger },
  )
}

/** Takes over tasks other workers held for `claimIdleMs` without settling them (XAUTOCLAIM). */
export const claimLoop = (opts: QueueLoopOptions & { claimIdleMs: number }): Loop => {
  const { consumer, queue, dispatcher, logger: log } = opts
  return runLoop(
    async () => {
      if (dispatcher.freeSlots() <= 0 || dispatcher.closed) return
      const claimed = await queue.claim(consumer, opts.claimIdleMs, dispatcher.freeSlots())
      for (const t of claimed)
        log.info({ doc: t.doc }, 'took over a task from a worker that stopped answering')
      dispatcher.accept(claimed)
    },
    {
      name: 'claim tasks',
      logger: log,
      intervalMs: Math.max(100, Math.floor(opts.claimIdleMs / 2)),
    },
  )
}

/** Moves due delayed tasks into the task streams every `intervalMs`. */
export const promoteLoop = (queue: TaskQueue, logger: Logger, intervalMs: number): Loop =>
  runLoop(async () => void (await queue.promote()), {
    name: 'promote tasks',
    logger,
    intervalMs,
  })

/** Publishes the queue's depth as gauges every 5 s. */
export const queueMetricsLoop = (
  queue: TaskQueue,
  metrics: Pick<WorkerMetrics, 'queueDepth' | 'oldestPending'>,
  logger: Logger,
): Loop =>
  runLoop(
    async () => {
      const depth = await queue.depth()
      metrics.queueDepth.set({ state: 'queued' }, depth.queued)
      metrics.queueDepth.set({ state: 'delayed' }, depth.delayed)
      metrics.queueDepth.set({ state: 'pending' }, depth.pending)
      metrics.oldestPending.set(depth.oldestPendingMs / 1000)
    },
    { name: 'queue metrics', logger, intervalMs: 5000 },
  )

/**
 * On a Redis Cluster, enqueues tasks marked in a document's slot that no queue shard holds (a crash
 * between append-2.lua and its enqueue), every `intervalMs`; see TaskQueue.reconcile.
 */
export const reconcileLoop = (queue: TaskQueue, logger: Logger, intervalMs: number): Loop =>
  runLoop(
    async () => {
      const enqueued = await queue.reconcile(intervalMs)
      if (enqueued > 0) logger.warn({ enqueued }, 'enqueued compaction tasks a crash had left out')
    },
    { name: 'reconcile tasks', logger, intervalMs },
  )
