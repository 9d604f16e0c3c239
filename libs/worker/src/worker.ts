import type { Logger } from '@streambed/common'
import type { DocStorage } from '@streambed/storage'
import type { DocStreams, TaskQueue } from '@streambed/streams'
import { type CompactionTiming, compactTask } from './compactor.js'
import { type Hooks, noHooks } from './hooks.js'
import { createMerger, type MergerOptions } from './merger.js'
import type { WorkerMetrics } from './metrics.js'
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
  const { queue, metrics, consumer, timing } = opts
  const logger = opts.logger.child({ consumer })
  const hooks = opts.hooks ?? noHooks
  const merger = createMerger({ threadAboveBytes: 512 * 1024, threads: 1, ...opts.merger })
  const deps = { ...opts, merger, logger, hooks }
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
  }
}
