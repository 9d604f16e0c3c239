import type { Registry } from 'prom-client'
import type { Logger } from '@streambed/common'
import { openStorage } from '@streambed/storage'
import { parseHooks, startWorkerProcess, type WorkerProcess } from '@streambed/worker'
import type { WorkerConfig } from './config.js'
import { startOperations } from './operations.js'

export { parseWorkerConfig, type WorkerConfig } from './config.js'

export type RunningWorker = WorkerProcess

export interface WorkerAppOptions {
  /** Serve /healthz, /readyz, /metrics on PORT; default true (`streambed all` shares the node's). */
  listen?: boolean
  /** Register metrics here instead of a registry of its own. */
  registry?: Registry
}

/** A compaction worker from its configuration, on the storage backend STORAGE names. */
export const startWorkerApp = (
  config: WorkerConfig,
  logger: Logger,
  opts: WorkerAppOptions = {},
): Promise<RunningWorker> =>
  startWorkerProcess({
    workerId: config.WORKER_ID,
    redis: {
      url: config.REDIS_URL,
      clusterNodes: config.REDIS_CLUSTER_NODES,
      commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
      allowEviction: config.REDIS_ALLOW_EVICTION,
    },
    redisPrefix: config.REDIS_PREFIX,
    queueShards: config.QUEUE_SHARDS,
    waitReplicas: config.REDIS_WAIT_REPLICAS,
    waitTimeoutMs: config.REDIS_WAIT_TIMEOUT_MS,
    openStorage: (log) => openStorage(config, log),
    http: (opts.listen ?? true) ? { host: config.HOST, port: config.PORT } : null,
    sideJobs: (deps) => startOperations(config, deps),
    registry: opts.registry,
    logger,
    worker: {
      concurrency: config.WORKER_CONCURRENCY,
      batchSize: config.WORKER_BATCH_SIZE,
      claimIdleMs: config.CLAIM_IDLE_MS,
      timing: {
        compactIntervalMs: config.COMPACT_INTERVAL_MS,
        compactIdleMs: config.COMPACT_IDLE_MS,
        minMessageLifetimeMs: config.MIN_MESSAGE_LIFETIME_MS,
        tombstoneTtlMs: config.TOMBSTONE_TTL_MS,
      },
      merger: {
        threads: config.WORKER_THREADS,
        threadAboveBytes: config.WORKER_THREAD_ABOVE_BYTES,
      },
      hooks: parseHooks(config.STREAMBED_TEST_HOOKS),
    },
  })
