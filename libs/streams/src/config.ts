import { type z } from 'zod'
import { envBool, envHostPorts, envInt, envString, envUrl } from '@streambed/common'

/** Redis settings shared by every process kind (documented in the README). */
export const redisEnvShape = {
  REDIS_URL: envUrl({
    protocols: ['redis:', 'rediss:'],
    default: 'redis://127.0.0.1:6379',
    example: 'redis://127.0.0.1:6379 or rediss://user:pass@host:6380/0',
  }),
  REDIS_PREFIX: envString({
    default: 'streambed',
    pattern: /^[A-Za-z0-9_.:-]{1,64}$/,
    form: '1-64 characters from A-Z a-z 0-9 _ . : - (no braces)',
  }),
  REDIS_CLUSTER_NODES: envHostPorts(),
  REDIS_WAIT_REPLICAS: envInt({ default: 0, min: 0, max: 16 }),
  REDIS_WAIT_TIMEOUT_MS: envInt({ default: 1000, min: 1 }),
  REDIS_COMMAND_TIMEOUT_MS: envInt({ default: 5000, min: 100 }),
  REDIS_ALLOW_EVICTION: envBool({ default: false }),
  QUEUE_SHARDS: envInt({ default: 8, min: 1, max: 1024 }),
}

export type RedisEnv = { [K in keyof typeof redisEnvShape]: z.output<(typeof redisEnvShape)[K]> }
