import type { Logger } from '@streambed/common'
import type { DocStorage } from '@streambed/storage'
import type { DocStreams, TaskQueue } from '@streambed/streams'
import { type CompactionTiming, type StoredEvent, compactTask } from './compactor.js'
import { type Hooks, noHooks } from './hooks.js'
import { createMerger, type MergerOptions } from './merger.js'
import type { WorkerMetrics } from './metrics.js'
import { sharedPerTurn } from './shared-clock.js'
import { createStorageBatches } from './storage-batches.js'
import { claimLoop, promoteLoop, queueMetricsLoop, readLoop, reconcileLoop } from './queue-loops.js'
import { createTaskDispatcher } from './task-dispatcher.js'
import { createTaskRunner } from './task-runner.js'

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
  /**
   * Most documents whose storage calls are made together (group commit): the tasks a queue read
   * delivers start together, and their loads, archives and compare-and-sets go to storage as one
   * call each. Default 64 (never more than `concurrency`); 1 stores each document on its own.
   */
  batchSize?: number
  /** A task delivered to a worker that did not settle it for this long is taken over. */
  claimIdleMs: number
  /** XREADGROUP BLOCK time; also bounds how long stop() waits for the read loop. */
  blockMs?: number
  /** How often due delayed tasks are moved into the streams. */
  promoteIntervalMs?: number
  /** On a Redis Cluster, how often tasks a crash left unqueued are looked for; default 30 s. */
  reconcileIntervalMs?: number
  merger?: Partial<MergerOptions>
  hooks?: Hooks
  /**
   * Called before each compare-and-set that stores a document's new state (webhooks'
   * document.created / document.updated). At least once: a crash or a lost compare-and-set can
   * repeat a call; an error puts the task back.
   */
  announce?: (stored: StoredEvent) => Promise<void>
}

export interface Worker {
  /** Stops taking tasks, finishes the ones in hand, settles them. */
  stop(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
  readonly activeTasks: number
  /** Most documents stored together (WorkerOptions.batchSize, as applied). */
  readonly batchSize: number
}

/**
 * A compaction worker: reads tasks from the queue's consumer group, processes up to `concurrency`
 * at a time, takes over tasks of dead workers (XAUTOCLAIM), and promotes delayed tasks. Holds no
 * state between tasks beyond retry counters.
 */
export const startWorker = async (opts: WorkerOptions): Promise<Worker> => {
  const { queue, metrics, consumer, timing } = opts
  const logger = opts.logger.child({ consumer })
  const hooks = opts.hooks ?? noHooks
  const merger = createMerger({ threadAboveBytes: 512 * 1024, threads: 1, ...opts.merger })
  const batchSize = Math.max(1, Math.min(opts.batchSize ?? 64, opts.concurrency))
  const batches = createStorageBatches(opts.storage, { maxSize: batchSize, logger })
  const deps = { ...opts, batches, merger, logger, hooks, now: sharedPerTurn(() => queue.now()) }
  await queue.ensureGroups()

  const runner = createTaskRunner({
    process: (task) => compactTask(deps, task),
    queue,
    hooks,
    metrics,
    logger,
  })
  const dispatcher = createTaskDispatcher({
    concurrency: opts.concurrency,
    run: runner.run,
    putBack: (task) => runner.settle(task, timing.compactIdleMs, 'busy'),
    logger,
    onActiveChange: (active) => metrics.active.set(active),
    // A busy worker reads when half its slots are free (at most a batch): it then works on two
    // batches at a time, one storing while the other reads.
    slotsPerRead: Math.min(batchSize, Math.floor(opts.concurrency / 2)),
  })
  const loopOpts = { consumer, queue, dispatcher, logger }
  const loops = [
    readLoop({ ...loopOpts, blockMs: opts.blockMs ?? 1000 }),
    claimLoop({ ...loopOpts, claimIdleMs: opts.claimIdleMs }),
    promoteLoop(queue, logger, opts.promoteIntervalMs ?? 100),
    queueMetricsLoop(queue, metrics, logger),
    ...(queue.clustered ? [reconcileLoop(queue, logger, opts.reconcileIntervalMs ?? 30_000)] : []),
  ]

  let stopped: Promise<void> | undefined
  const stop = () =>
    (stopped ??= (async () => {
      dispatcher.close()
      await Promise.all(loops.map((l) => l.stop()))
      // Tasks delivered but not started go straight back to the queue for the other workers.
      await dispatcher.drain((task) => queue.settle(task, 0))
      await merger.close()
    })())
  return {
    stop,
    [Symbol.asyncDispose]: stop,
    get activeTasks() {
      return dispatcher.activeTasks
    },
    batchSize,
  }
}
