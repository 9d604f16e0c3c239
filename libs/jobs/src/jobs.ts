import { randomBytes } from 'node:crypto'
import { FlowProducer, Job, Queue, Worker } from 'bullmq'
import type { Cluster, Redis } from 'ioredis'
import { AppError, type Logger, sleep } from '@streambed/common'

/**
 * Long operations (backups, restores, replays, verification, scheduled maintenance) as BullMQ
 * flows on the worker fleet: one parent job per operation, one child per batch. Batches run on any
 * worker, are retried when their worker dies (BullMQ's stalled-job check) and must be idempotent;
 * the parent runs `finish` over every batch's result once all succeeded. The same code runs in
 * the calling process with `runInline` (needed when the thing being restored is Redis itself).
 * BullMQ keeps its own keys (`<prefix>:v1:{jobs}:…`, one hash slot for a Redis Cluster) and is
 * never on the compaction path.
 */

/** What an operation's code gets besides its data. */
export interface OperationContext {
  readonly logger: Logger
  /** Reports progress within a batch (0..1); shown by followers. */
  progress(fraction: number): Promise<void>
}

export interface Operation<
  Params = unknown,
  Batch = unknown,
  BatchResult = unknown,
  Result = unknown,
> {
  readonly name: string
  /** Splits the operation into batches; runs where it is submitted (CLI, API). */
  plan(params: Params): Promise<Batch[]>
  /** One batch. Idempotent: after a crash it runs again, possibly on another worker. */
  runBatch(batch: Batch, ctx: OperationContext): Promise<BatchResult>
  /** Combines the results of every batch (in batch order). */
  finish(params: Params, results: BatchResult[], ctx: OperationContext): Promise<Result>
}

/** How far an operation got. */
export interface JobStatus {
  readonly id: string
  readonly operation: string
  readonly state: 'running' | 'completed' | 'failed'
  /** Batches finished, and in all. */
  readonly done: number
  readonly total: number
  readonly result?: unknown
  readonly error?: string
}

export interface JobsOptions {
  /** A connection for BullMQ (created with `maxRetriesPerRequest: null`), or a Redis Cluster. */
  connection: Redis | Cluster
  /** The deployment's REDIS_PREFIX. */
  redisPrefix: string
  logger: Logger
  operations: readonly Operation<never, never, never, never>[]
  /** A batch whose worker stops renewing its lock for this long is run again elsewhere. */
  lockMs?: number
  /** Attempts per batch before the operation fails. */
  attempts?: number
}

const QUEUE = 'ops'

interface BatchData {
  readonly operation: string
  readonly batch: unknown
  readonly index: number
}
interface ParentData {
  readonly operation: string
  readonly params: unknown
  readonly total: number
}

/** A job id without the `:` BullMQ refuses: `<operation>-<time>-<random>`. */
const newJobId = (operation: string) =>
  `${operation}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`

export const createJobs = (opts: JobsOptions) => {
  const prefix = `${opts.redisPrefix}:v1:{jobs}`
  const connection = opts.connection
  const lockMs = opts.lockMs ?? 30_000
  const attempts = opts.attempts ?? 5
  const operations = new Map<string, Operation>()
  for (const op of opts.operations) operations.set(op.name, op)
  const queue = new Queue(QUEUE, { connection, prefix })
  const flows = new FlowProducer({ connection, prefix })
  let worker: Worker | null = null

  const operationOf = (name: string): Operation => {
    const op = operations.get(name)
    if (!op) throw new AppError('BAD_MESSAGE', `unknown operation "${name}"`)
    return op
  }

  const contextOf = (job: Job | null, logger: Logger): OperationContext => ({
    logger,
    progress: async (fraction) => {
      await job?.updateProgress(Math.round(Math.min(1, Math.max(0, fraction)) * 1000) / 1000)
    },
  })

  /** Submits an operation; returns its job id (follow it with `status`). */
  const submit = async (operation: string, params: unknown): Promise<string> => {
    const op = operationOf(operation)
    const batches = await op.plan(params)
    const id = newJobId(operation)
    const parent: ParentData = { operation, params, total: batches.length }
    await flows.add({
      name: operation,
      queueName: QUEUE,
      data: parent,
      opts: { jobId: id, attempts, backoff: { type: 'exponential', delay: 1000 } },
      children: batches.map((batch, index) => ({
        name: `${operation}-batch`,
        queueName: QUEUE,
        data: { operation, batch, index } satisfies BatchData,
        opts: {
          jobId: `${id}-b${index}`,
          attempts,
          backoff: { type: 'exponential', delay: 1000 },
          failParentOnFailure: true,
        },
      })),
    })
    return id
  }

  /** Where an operation is. Throws NOT_FOUND for an unknown id. */
  const status = async (id: string): Promise<JobStatus> => {
    const job = await Job.fromId<ParentData>(queue, id)
    if (!job) throw new AppError('NOT_FOUND', `no operation ${id}`)
    const state = await job.getState()
    const counts = await job.getDependenciesCount({ processed: true, unprocessed: true })
    const total = job.data.total
    const base = { id, operation: job.data.operation, total }
    if (state === 'completed' || state === 'failed') {
      // The job was loaded before it ended: load it again for its result or reason.
      const ended = (await Job.fromId<ParentData>(queue, id)) ?? job
      return state === 'completed'
        ? { ...base, state, done: total, result: ended.returnvalue }
        : { ...base, state, done: counts.processed ?? 0, error: ended.failedReason }
    }
    return { ...base, state: 'running', done: Math.min(total, counts.processed ?? 0) }
  }

  return {
    submit,
    status,

    /** How many worker processes take operations now (0: submit would wait forever; go inline). */
    workers: (): Promise<number> => queue.getWorkersCount(),

    /** Polls `status` until the operation ends; `onProgress` sees every change. */
    follow: async (
      id: string,
      onProgress: (status: JobStatus) => void = () => undefined,
      everyMs = 250,
    ): Promise<JobStatus> => {
      let last = ''
      for (;;) {
        const now = await status(id)
        const key = `${now.state}/${now.done}`
        if (key !== last) onProgress(now)
        last = key
        if (now.state !== 'running') return now
        await sleep(everyMs)
      }
    },

    /** Runs an operation here, batch after batch, without any worker. */
    runInline: async (
      operation: string,
      params: unknown,
      onProgress: (done: number, total: number) => void = () => undefined,
    ): Promise<unknown> => {
      const op = operationOf(operation)
      const batches = await op.plan(params)
      const ctx = contextOf(null, opts.logger)
      const results: unknown[] = []
      onProgress(0, batches.length)
      for (const batch of batches) {
        results.push(await op.runBatch(batch, ctx))
        onProgress(results.length, batches.length)
      }
      return op.finish(params, results, ctx)
    },

    /** Makes this process run operations' batches and finishes (a worker process). */
    startWorker: (concurrency = 2): void => {
      worker = new Worker(
        QUEUE,
        async (job: Job) => {
          const log = opts.logger.child({ job: job.id, operation: job.name })
          if (job.name.endsWith('-scheduled')) {
            // A scheduler's tick: the operation itself runs as a flow like any other.
            const data = job.data as { operation: string; params: unknown }
            return { submitted: await submit(data.operation, data.params) }
          }
          if (job.name.endsWith('-batch')) {
            const data = job.data as BatchData
            return operationOf(data.operation).runBatch(data.batch, contextOf(job, log))
          }
          const data = job.data as ParentData
          const values = await job.getChildrenValues()
          // Keys are "<prefix>:<queue>:<child id>"; child ids end in "-b<index>".
          const results: unknown[] = new Array<unknown>(data.total)
          for (const [key, value] of Object.entries(values)) {
            const index = Number(/-b(\d+)$/.exec(key)?.[1])
            results[index] = value
          }
          return operationOf(data.operation).finish(
            data.params,
            results,
            contextOf(job, log),
          )
        },
        {
          connection,
          prefix,
          concurrency,
          lockDuration: lockMs,
          stalledInterval: Math.max(1000, Math.floor(lockMs / 2)),
          maxStalledCount: 10,
        },
      )
      worker.on('failed', (job, err) =>
        opts.logger.warn({ err, job: job?.id, attempts: job?.attemptsMade }, 'job failed'),
      )
      worker.on('error', (err) => opts.logger.warn({ err }, 'jobs worker error'))
    },

    /** Runs `operation` with `params` on a cron `pattern` (UTC), replacing an earlier schedule. */
    schedule: async (schedulerId: string, pattern: string, operation: string, params: unknown) => {
      operationOf(operation)
      await queue.upsertJobScheduler(
        schedulerId,
        { pattern, tz: 'UTC' },
        { name: `${operation}-scheduled`, data: { operation, params } },
      )
    },

    unschedule: async (schedulerId: string) => {
      await queue.removeJobScheduler(schedulerId)
    },

    /** Stops; waits for the batches in hand unless `force` (they are then run again elsewhere). */
    close: async (force = false): Promise<void> => {
      await worker?.close(force)
      await flows.close()
      await queue.close()
    },
  }
}

export type Jobs = ReturnType<typeof createJobs>
