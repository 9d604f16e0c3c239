import type { Registry } from 'prom-client'
import { describeError, type Logger, type Readiness } from '@streambed/common'
import type { DocStorage } from '@streambed/storage'
import {
  connectRedisPair,
  createDocStreams,
  createKeys,
  createTaskQueue,
  type DocStreams,
  type Keys,
  type Redis,
} from '@streambed/streams'
import { createWorkerMetrics } from './metrics.js'
import { type OpsServer, startOpsServer } from './ops-server.js'
import { startWorker, type Worker, type WorkerOptions } from './worker.js'
import type { StoredEvent } from './compactor.js'

export interface WorkerProcessOptions {
  /** Consumer name in the group and Redis client name; unique per worker process. */
  workerId: string
  redis: {
    url: string
    clusterNodes?: readonly { host: string; port: number }[] | undefined
    commandTimeoutMs: number
    allowEviction: boolean
  }
  redisPrefix: string
  queueShards: number
  /** Replicas that confirm an append (WAIT) before it counts (replays, imports); default 0. */
  waitReplicas?: number
  waitTimeoutMs?: number
  /** Opens the storage backend the caller chose; called once Redis is connected. */
  openStorage: (logger: Logger) => Promise<DocStorage>
  /** Where to serve /healthz, /readyz, /metrics; null when a server node in this process does. */
  http: { host: string; port: number } | null
  /** Register metrics here (without default metrics) instead of a registry of its own. */
  registry?: Registry | undefined
  logger: Logger
  /** Compaction tuning, passed to startWorker. */
  worker: Omit<WorkerOptions, 'consumer' | 'queue' | 'streams' | 'storage' | 'logger' | 'metrics'>
  /**
   * Work beside compaction (long operations on BullMQ, schedules), started once compaction runs,
   * stopped before storage and Redis close.
   */
  sideJobs?: (deps: SideJobDeps) => Promise<SideJobs>
}

/** What a worker process runs beside compaction (long operations, webhooks). */
export interface SideJobs {
  /** Told of each state compaction is about to store (WorkerOptions.announce). */
  announce?: (stored: StoredEvent) => Promise<void>
  close(): Promise<void>
}

/** What side jobs get of the worker process. */
export interface SideJobDeps {
  /** The worker's metrics registry. */
  readonly registry: Registry
  readonly redis: Redis
  readonly keys: Keys
  readonly storage: DocStorage
  readonly streams: DocStreams
  readonly logger: Logger
}

export interface WorkerProcess {
  /** Port of the operations endpoints, or null without `http`. */
  readonly port: number | null
  readonly workerId: string
  /** Finishes the tasks in hand, then closes storage and Redis. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/** /readyz of a worker: Redis connected, then storage answering; shows the tasks in progress. */
export const workerReadiness =
  (
    redis: { readonly status: string },
    storage: Pick<DocStorage, 'ping'>,
    worker: Pick<Worker, 'activeTasks'>,
  ) =>
  async (): Promise<Readiness> => {
    if (redis.status !== 'ready') return { ready: false, reason: `redis ${redis.status}` }
    try {
      await storage.ping()
    } catch (err) {
      return { ready: false, reason: describeError(err).message }
    }
    return { ready: true, details: { activeTasks: worker.activeTasks } }
  }

/** Everything a worker process runs: Redis, storage, task queue, worker loops, operations HTTP. */
export const startWorkerProcess = async (opts: WorkerProcessOptions): Promise<WorkerProcess> => {
  const log = opts.logger.child({ process: 'worker', workerId: opts.workerId })
  const {
    redis,
    second: blocking,
    disconnect,
  } = await connectRedisPair({
    ...opts.redis,
    name: `streambed-worker-${opts.workerId}`,
    logger: log,
  })
  try {
    const storage = await opts.openStorage(log)
    const keys = createKeys(opts.redisPrefix)
    const shards = opts.queueShards
    const metrics = createWorkerMetrics(opts.registry, { defaultMetrics: !opts.registry })
    // With WAIT, appends (replays, imports) get a connection of their own (DocStreamsOptions.writer).
    const writer = opts.waitReplicas ? redis.duplicate() : null
    writer?.on('error', (err: Error) =>
      log.warn({ err: err.message, connection: 'writer' }, 'redis connection error'),
    )
    const streams = createDocStreams({
      redis,
      keys,
      queueShards: shards,
      storage,
      ...(writer ? { writer } : {}),
      ...(opts.waitReplicas ? { waitReplicas: opts.waitReplicas } : {}),
      ...(opts.waitTimeoutMs ? { waitTimeoutMs: opts.waitTimeoutMs } : {}),
    })
    // Side jobs first: they may announce stored states (webhooks) from the first compaction on.
    const side = await opts.sideJobs?.({
      redis,
      keys,
      storage,
      streams,
      logger: log,
      registry: metrics.registry,
    })
    const worker = await startWorker({
      ...opts.worker,
      ...(side?.announce ? { announce: side.announce } : {}),
      consumer: opts.workerId,
      queue: createTaskQueue({ redis, blocking, keys, shards }),
      streams,
      storage,
      logger: log,
      metrics,
    }).catch(async (err: unknown) => {
      await side?.close()
      throw err
    })
    const ops: OpsServer | null = opts.http
      ? await startOpsServer({
          ...opts.http,
          logger: log,
          ops: {
            readiness: workerReadiness(redis, storage, worker),
            metrics: async () => ({
              contentType: metrics.registry.contentType,
              text: await metrics.registry.metrics(),
            }),
          },
        })
      : null
    const { concurrency } = opts.worker
    const { batchSize } = worker
    const port = ops?.port ?? null
    log.info({ port, storage: storage.kind, concurrency, batchSize, shards }, 'worker started')
    let closed: Promise<void> | undefined
    const close = () =>
      (closed ??= (async () => {
        log.info('worker stopping: finishing the tasks in hand')
        await ops?.close()
        await worker.stop()
        await side?.close()
        await storage.close()
        await redis.quit().catch(() => redis.disconnect())
        writer?.disconnect()
        blocking.disconnect()
        log.info('worker stopped')
      })())
    return { port, workerId: opts.workerId, close, [Symbol.asyncDispose]: close }
  } catch (err) {
    disconnect()
    throw err
  }
}
