import { describeError, type Logger } from '@streambed/common'
import type { Task, TaskQueue } from '@streambed/streams'
import type { Outcome } from './compactor.js'
import type { Hooks } from './hooks.js'
import type { WorkerMetrics } from './metrics.js'

export interface TaskRunnerOptions {
  /** Processes one delivery (compactTask in a worker). */
  process: (task: Task) => Promise<Outcome>
  queue: Pick<TaskQueue, 'settle'>
  hooks: Hooks
  metrics: Pick<WorkerMetrics, 'tasks' | 'failures'>
  logger: Logger
}

export interface TaskRunner {
  /** Processes the task and settles it; a failure puts it back after a growing backoff. */
  run: (task: Task) => Promise<void>
  /** Acknowledges the delivery, or with `delayMs` puts the task back for that long. */
  settle: (task: Task, delayMs: number | null, outcome: string) => Promise<void>
}

/** Backoff for a document whose compaction failed `failures` times in a row. */
export const retryDelayMs = (failures: number): number =>
  Math.min(250 * 2 ** Math.max(0, failures - 1), 30_000)

/**
 * Runs deliveries and settles them, counting outcomes. Holds the only state a worker keeps between
 * tasks: consecutive failures per document, for the retry backoff.
 */
export const createTaskRunner = (opts: TaskRunnerOptions): TaskRunner => {
  const { queue, hooks, metrics, logger: log } = opts
  const failures = new Map<string, number>()

  const settle = async (task: Task, delayMs: number | null, outcome: string) => {
    await hooks('before-ack', task.doc)
    await queue.settle(task, delayMs)
    metrics.tasks.inc({ outcome })
  }

  const fail = async (task: Task, err: unknown) => {
    metrics.failures.inc({ code: describeError(err).code })
    const n = (failures.get(task.doc) ?? 0) + 1
    // Bounded: a document that later succeeded on another worker never clears its entry here.
    if (failures.size > 10_000) failures.clear()
    failures.set(task.doc, n)
    const delay = retryDelayMs(n)
    log.warn({ err, doc: task.doc, failures: n, retryInMs: delay }, 'compaction failed; will retry')
    // The task goes back to the delayed set; if even that fails (Redis down), it stays pending
    // and is claimed again after claimIdleMs.
    await settle(task, delay, 'failed').catch((settleErr: unknown) =>
      log.warn(
        { err: settleErr, doc: task.doc },
        'could not settle a failed task; it stays pending',
      ),
    )
  }

  const run = async (task: Task) => {
    try {
      const outcome = await opts.process(task)
      failures.delete(task.doc)
      await settle(task, outcome.settle === 'ack' ? null : outcome.delayMs, outcome.reason)
    } catch (err) {
      await fail(task, err)
    }
  }

  return { run, settle }
}
