import { type Logger, type Loop, runLoop } from '@streambed/common'
import type { DocStorage } from '@streambed/storage'
import type { DocStreams, Task, TaskQueue } from '@streambed/streams'
import { type CompactionTiming, compactTask, errorCode, retryDelayMs } from './compactor.js'
import { type Hooks, noHooks } from './hooks.js'
import { createMerger, type MergerOptions } from './merger.js'
import type { WorkerMetrics } from './metrics.js'

export interface WorkerOptions {
  /** Consumer name in the group; unique per worker process. */
  consumer: string
  queue: TaskQueue
  streams: DocStreams
  storage: DocStorage
  logger: Logger
  metrics: WorkerMetrics
  timing: CompactionTiming
  /** Tasks processed at once. */
  concurrency: number
  /** A task delivered to a worker that did not settle it for this long is taken over. */
  claimIdleMs: number
  /** XREADGROUP BLOCK time; also bounds how long stop() waits for the read loop. */
  blockMs?: number
  /** How often due delayed tasks are moved into the streams. */
  promoteIntervalMs?: number
  merger?: Partial<MergerOptions>
  hooks?: Hooks
}

export interface Worker {
  /** Stops taking tasks, finishes the ones in hand, settles them. */
  stop(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
  readonly activeTasks: number
}

/**
 * A compaction worker: reads tasks from the queue's consumer group, processes up to `concurrency`
 * at a time, takes over tasks of dead workers (XAUTOCLAIM), and promotes delayed tasks. Holds no
 * state between tasks beyond retry counters.
 */
export const startWorker = async (opts: WorkerOptions): Promise<Worker> => {
  const { queue, logger, metrics, consumer } = opts
  const log = logger.child({ consumer })
  const hooks = opts.hooks ?? noHooks
  const merger = createMerger({ threadAboveBytes: 512 * 1024, threads: 1, ...opts.merger })
  const deps = {
    storage: opts.storage,
    streams: opts.streams,
    queue,
    merger,
    logger: log,
    metrics,
    hooks,
    timing: opts.timing,
  }
  const blockMs = opts.blockMs ?? 1000
  const inProgress = new Map<string, Promise<void>>()
  const failures = new Map<string, number>()
  let stopping = false
  let slotFreed: (() => void) | null = null

  await queue.ensureGroups()

  const settle = async (task: Task, delayMs: number | null, outcome: string) => {
    await hooks('before-ack', task.doc)
    await queue.settle(task, delayMs)
    metrics.tasks.inc({ outcome })
  }

  const run = async (task: Task): Promise<void> => {
    try {
      const outcome = await compactTask(deps, task)
      failures.delete(task.doc)
      await settle(task, outcome.settle === 'ack' ? null : outcome.delayMs, outcome.reason)
    } catch (err) {
      const code = errorCode(err)
      metrics.failures.inc({ code })
      const n = (failures.get(task.doc) ?? 0) + 1
      // Bounded: a document that later succeeded on another worker never clears its entry here.
      if (failures.size > 10_000) failures.clear()
      failures.set(task.doc, n)
      const delay = retryDelayMs(n)
      log.warn(
        { err, doc: task.doc, failures: n, retryInMs: delay },
        'compaction failed; will retry',
      )
      // The task goes back to the delayed set; if even that fails (Redis down), it stays pending
      // and is claimed again after claimIdleMs.
      await settle(task, delay, 'failed').catch((settleErr: unknown) =>
        log.warn(
          { err: settleErr, doc: task.doc },
          'could not settle a failed task; it stays pending',
        ),
      )
    }
  }

  const activeDocs = new Set<string>()
  /** Tasks delivered to this worker, waiting for a free slot (a read can deliver a few extra). */
  const backlog: Task[] = []
  const pump = () => {
    while (backlog.length > 0 && inProgress.size < opts.concurrency)
      dispatch(backlog.shift() as Task)
  }
  const dispatch = (task: Task) => {
    const key = `${task.shard}:${task.entryId}`
    if (inProgress.has(key)) return
    // One delivery per document at a time in this worker; a duplicate comes back later.
    const duplicate = activeDocs.has(task.doc)
    if (!duplicate) activeDocs.add(task.doc)
    const work = duplicate ? settle(task, opts.timing.compactIdleMs, 'busy') : run(task)
    const p = work
      .catch((err: unknown) => log.warn({ err, doc: task.doc }, 'could not settle task'))
      .finally(() => {
        inProgress.delete(key)
        if (!duplicate) activeDocs.delete(task.doc)
        metrics.active.set(inProgress.size)
        pump()
        slotFreed?.()
      })
    inProgress.set(key, p)
    metrics.active.set(inProgress.size)
  }

  const freeSlots = () => opts.concurrency - inProgress.size - backlog.length
  const waitForSlot = () =>
    freeSlots() > 0 ? Promise.resolve() : new Promise<void>((resolve) => (slotFreed = resolve))
  const accept = (tasks: readonly Task[]) => {
    backlog.push(...tasks)
    pump()
  }

  const loops: Loop[] = [
    runLoop(
      async (signal) => {
        await waitForSlot()
        if (signal.aborted || stopping) return
        accept(await queue.read(consumer, freeSlots(), blockMs))
      },
      { name: 'read tasks', logger: log },
    ),
    runLoop(
      async () => {
        if (freeSlots() <= 0 || stopping) return
        const claimed = await queue.claim(consumer, opts.claimIdleMs, freeSlots())
        for (const t of claimed)
          log.info({ doc: t.doc }, 'took over a task from a worker that stopped answering')
        accept(claimed)
      },
      {
        name: 'claim tasks',
        logger: log,
        intervalMs: Math.max(100, Math.floor(opts.claimIdleMs / 2)),
      },
    ),
    runLoop(async () => void (await queue.promote()), {
      name: 'promote tasks',
      logger: log,
      intervalMs: opts.promoteIntervalMs ?? 100,
    }),
    runLoop(
      async () => {
        const depth = await queue.depth()
        metrics.queueDepth.set({ state: 'queued' }, depth.queued)
        metrics.queueDepth.set({ state: 'delayed' }, depth.delayed)
        metrics.queueDepth.set({ state: 'pending' }, depth.pending)
        metrics.oldestPending.set(depth.oldestPendingMs / 1000)
      },
      { name: 'queue metrics', logger: log, intervalMs: 5000 },
    ),
  ]

  let stopped: Promise<void> | undefined
  const stop = () => {
    stopped ??= (async () => {
      stopping = true
      slotFreed?.()
      await Promise.all(loops.map((l) => l.stop()))
      // Tasks delivered but not started go straight back to the queue for the other workers.
      const unstarted = backlog.splice(0)
      await Promise.allSettled(unstarted.map((t) => queue.settle(t, 0)))
      await Promise.allSettled([...inProgress.values()])
      await merger.close()
    })()
    return stopped
  }
  return {
    stop,
    [Symbol.asyncDispose]: stop,
    get activeTasks() {
      return inProgress.size
    },
  }
}
