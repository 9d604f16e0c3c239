import { z } from 'zod'
import {
  type Env,
  defaultProcessId,
  envBytes,
  envEnum,
  envInt,
  envOptional,
  envString,
  parseEnv,
} from '@streambed/common'
import { checkStorageEnv, storageEnvShape } from '@streambed/storage'
import { redisEnvShape } from '@streambed/streams'

/** Every environment variable a worker reads, with its default. Documented in the README. */
const workerConfigSchema = z
  .object({
    ...redisEnvShape,
    ...storageEnvShape,
    PORT: envInt({ default: 8081, min: 0, max: 65535 }),
    HOST: envString({ default: '0.0.0.0' }),
    WORKER_ID: envString({
      default: () => defaultProcessId('w'),
      pattern: /^[A-Za-z0-9_.-]{1,64}$/,
      form: 'an id of 1-64 characters from A-Z a-z 0-9 _ . -',
    }),
    LOG_LEVEL: envEnum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
      default: 'info',
    }),
    WORKER_CONCURRENCY: envInt({ default: 8, min: 1, max: 1024 }),
    COMPACT_INTERVAL_MS: envInt({ default: 30_000, min: 10 }),
    COMPACT_IDLE_MS: envInt({ default: 2_000, min: 10 }),
    MIN_MESSAGE_LIFETIME_MS: envInt({ default: 60_000, min: 0 }),
    CLAIM_IDLE_MS: envInt({ default: 30_000, min: 100 }),
    TOMBSTONE_TTL_MS: envInt({ default: 7 * 24 * 3600 * 1000, min: 1000 }),
    WORKER_THREADS: envInt({ default: 1, min: 0, max: 64 }),
    WORKER_THREAD_ABOVE_BYTES: envBytes({ default: 512 * 1024, min: 0 }),
    STREAMBED_TEST_HOOKS: envOptional(),
  })
  // Runs even when single variables failed, so every problem is reported at once.
  .superRefine((c, ctx) => checkStorageEnv(c, ctx), { when: () => true })

export type WorkerConfig = z.output<typeof workerConfigSchema>

/** Pure: parses `env`, throwing one AppError('CONFIG') that lists every problem. */
export const parseWorkerConfig = (env: Env): WorkerConfig => parseEnv(workerConfigSchema, env)
