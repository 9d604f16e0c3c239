import { z } from 'zod'
import { createLogger, envEnum, parseEnv, type Env, type Logger } from '@streambed/common'
import { checkStorageEnv, openStorage, storageEnvShape, type DocStorage } from '@streambed/storage'
import {
  connectRedis,
  createDocStreams,
  createKeys,
  createRedis,
  redisEnvShape,
  type DocStreams,
  type Keys,
  type Redis,
} from '@streambed/streams'

/** What the operator's commands read from the environment: Redis and storage, as the servers. */
const toolConfigSchema = z
  .object({
    ...redisEnvShape,
    ...storageEnvShape,
    LOG_LEVEL: envEnum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
      default: 'warn',
    }),
  })
  .superRefine((c, ctx) => checkStorageEnv(c, ctx), { when: () => true })

export type ToolConfig = z.output<typeof toolConfigSchema>

export const parseToolConfig = (env: Env): ToolConfig => parseEnv(toolConfigSchema, env)

/** The connections and handles a command works with; `close()` releases them. */
export interface ToolContext {
  readonly config: ToolConfig
  readonly logger: Logger
  readonly redis: Redis
  /** For BullMQ (never gives up on a command: blocking reads, long jobs). */
  readonly jobsConnection: Redis
  readonly keys: Keys
  readonly storage: DocStorage
  readonly streams: DocStreams
  readonly queueShards: number
  close(): Promise<void>
}

/** Connects to the deployment's Redis and storage named by the environment. */
export const openToolContext = async (env: Env, name: string): Promise<ToolContext> => {
  const config = parseToolConfig(env)
  // Logs go to stderr: stdout carries the command's result (and --json).
  const logger = createLogger({ level: config.LOG_LEVEL, destination: process.stderr })
  const clusterNodes = config.REDIS_CLUSTER_NODES
  const redis = createRedis({
    url: config.REDIS_URL,
    clusterNodes,
    connectionName: `streambed-${name}`,
  })
  const jobsConnection = createRedis({
    url: config.REDIS_URL,
    clusterNodes,
    connectionName: `streambed-${name}-jobs`,
    maxRetriesPerRequest: null,
  })
  try {
    await connectRedis(redis, config.REDIS_URL)
    const storage = await openStorage(config, logger)
    const keys = createKeys(config.REDIS_PREFIX)
    const streams = createDocStreams({
      redis,
      keys,
      queueShards: config.QUEUE_SHARDS,
      storage,
      waitReplicas: config.REDIS_WAIT_REPLICAS,
      waitTimeoutMs: config.REDIS_WAIT_TIMEOUT_MS,
    })
    return {
      config,
      logger,
      redis,
      jobsConnection,
      keys,
      storage,
      streams,
      queueShards: config.QUEUE_SHARDS,
      close: async () => {
        await storage.close()
        redis.disconnect()
        jobsConnection.disconnect()
      },
    }
  } catch (err) {
    redis.disconnect()
    jobsConnection.disconnect()
    throw err
  }
}
