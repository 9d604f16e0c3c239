import { createServer, type Server } from 'node:http'
import type { Registry } from 'prom-client'
import { describeError, type Logger } from '@streambed/common'
import { openStorage } from '@streambed/storage'
import { connectRedisPair, createDocStreams, createKeys, createTaskQueue } from '@streambed/streams'
import { createWorkerMetrics, parseHooks, startWorker } from '@streambed/worker'
import type { WorkerConfig } from './config.js'

export { parseWorkerConfig, workerConfigSchema, type WorkerConfig } from './config.js'

export interface RunningWorker {
  /** Port of the worker's HTTP endpoints, or null when it shares a server node's. */
  readonly port: number | null
  readonly workerId: string
  close(): Promise<void>
}

export interface WorkerAppOptions {
  /** Serve /healthz, /readyz, /metrics on PORT; default true (`streambed all` shares the node's). */
  listen?: boolean
  /** Register metrics here instead of a registry of its own. */
  registry?: Registry
}

/** Wires a compaction worker: Redis, storage, queue, worker loops, HTTP endpoints. */
export const startWorkerApp = async (
  config: WorkerConfig,
  logger: Logger,
  opts: WorkerAppOptions = {},
): Promise<RunningWorker> => {
  const log = logger.child({ process: 'worker', workerId: config.WORKER_ID })
  const {
    redis,
    second: blocking,
    disconnect,
  } = await connectRedisPair({
    url: config.REDIS_URL,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    name: `streambed-worker-${config.WORKER_ID}`,
    allowEviction: config.REDIS_ALLOW_EVICTION,
    logger: log,
  })
  try {
    const storage = await openStorage(config, log)
    const keys = createKeys(config.REDIS_PREFIX)
    const metrics = createWorkerMetrics(opts.registry, { defaultMetrics: !opts.registry })
    const worker = await startWorker({
      consumer: config.WORKER_ID,
      queue: createTaskQueue({ redis, blocking, keys, shards: config.QUEUE_SHARDS }),
      streams: createDocStreams({ redis, keys, queueShards: config.QUEUE_SHARDS }),
      storage,
      logger: log,
      metrics,
      concurrency: config.WORKER_CONCURRENCY,
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
    })

    let server: Server | null = null
    let port: number | null = null
    if (opts.listen ?? true) {
      server = createServer((req, res) => {
        const send = (status: number, body: string, type = 'application/json') => {
          res.writeHead(status, { 'content-type': type })
          res.end(body)
        }
        if (req.method === 'GET' && req.url === '/healthz') return send(200, '{"status":"ok"}')
        if (req.method === 'GET' && req.url === '/readyz') {
          if (redis.status !== 'ready')
            return send(
              503,
              JSON.stringify({ status: 'not ready', reason: `redis ${redis.status}` }),
            )
          storage.ping().then(
            () => send(200, JSON.stringify({ status: 'ready', activeTasks: worker.activeTasks })),
            (err: unknown) =>
              send(
                503,
                JSON.stringify({ status: 'not ready', reason: describeError(err).message }),
              ),
          )
          return
        }
        if (req.method === 'GET' && req.url === '/metrics') {
          metrics.registry.metrics().then(
            (text) => send(200, text, metrics.registry.contentType),
            (err: unknown) => send(500, JSON.stringify({ error: describeError(err).message })),
          )
          return
        }
        send(
          404,
          JSON.stringify({
            error: { code: 'NOT_FOUND', message: `no route for ${req.method} ${req.url}` },
          }),
        )
      })
      const srv = server
      port = await new Promise<number>((resolve, reject) => {
        srv.once('error', reject)
        srv.listen(config.PORT, config.HOST, () => {
          const address = srv.address()
          resolve(typeof address === 'object' && address ? address.port : config.PORT)
        })
      })
    }
    log.info(
      {
        port,
        storage: storage.kind,
        concurrency: config.WORKER_CONCURRENCY,
        shards: config.QUEUE_SHARDS,
      },
      'worker started',
    )
    return {
      port,
      workerId: config.WORKER_ID,
      close: async () => {
        log.info('worker stopping: finishing the tasks in hand')
        await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
        await worker.stop()
        await storage.close()
        await redis.quit().catch(() => redis.disconnect())
        blocking.disconnect()
        log.info('worker stopped')
      },
    }
  } catch (err) {
    disconnect()
    throw err
  }
}
