import { z } from 'zod'
import {
  type Env,
  defaultProcessId,
  envBytes,
  envDuration,
  envEnum,
  envInt,
  envOptional,
  envString,
  parseEnv,
} from '@streambed/common'
import { checkStorageEnv, storageEnvShape } from '@streambed/storage'
import { redisEnvShape } from '@streambed/streams'
import { checkWebhookEnv, webhookEnvShape } from '@streambed/webhooks'

const DAY = 86_400_000
/** Five or six cron fields (the first, seconds, optional), as BullMQ's job schedulers read them. */
const CRON = /^\S+(\s+\S+){4,5}$/

/** Every environment variable a worker reads, with its default. Documented in the README. */
const workerConfigSchema = z
  .object({
    ...redisEnvShape,
    ...storageEnvShape,
    ...webhookEnvShape,
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
    WORKER_CONCURRENCY: envInt({ default: 64, min: 1, max: 1024 }),
    WORKER_BATCH_SIZE: envInt({ default: 64, min: 1, max: 1024 }),
    COMPACT_INTERVAL_MS: envInt({ default: 30_000, min: 10 }),
    COMPACT_IDLE_MS: envInt({ default: 2_000, min: 10 }),
    MIN_MESSAGE_LIFETIME_MS: envInt({ default: 60_000, min: 0 }),
    CLAIM_IDLE_MS: envInt({ default: 30_000, min: 100 }),
    TOMBSTONE_TTL_MS: envInt({ default: 7 * 24 * 3600 * 1000, min: 1000 }),
    WORKER_THREADS: envInt({ default: 1, min: 0, max: 64 }),
    WORKER_THREAD_ABOVE_BYTES: envBytes({ default: 512 * 1024, min: 0 }),
    STREAMBED_TEST_HOOKS: envOptional(),
    JOBS_CONCURRENCY: envInt({ default: 2, min: 0, max: 64 }),
    JOBS_LOCK_MS: envInt({ default: 30_000, min: 1000 }),
    BACKUP_SCHEDULE: envOptional({ pattern: CRON, form: 'a cron pattern like "0 3 * * *"' }),
    BACKUP_DEST: envOptional({
      pattern: /^(s3:\/\/[^/\s]+\/\S*|\/\S*)$/,
      form: 's3://<bucket>/<prefix>/ or an absolute directory',
    }),
    BACKUP_KEEP: envInt({ default: 7, min: 1 }),
    HISTORY_MAINTENANCE_SCHEDULE: envString({
      default: '17 * * * *',
      pattern: CRON,
      form: 'a cron pattern like "17 * * * *"',
    }),
    HISTORY_RETENTION: envDuration({ default: 30 * DAY, min: 0 }),
    HISTORY_CHECKPOINT_INTERVAL: envDuration({ default: 3_600_000, min: 1000 }),
    HISTORY_PACK_AFTER: envDuration({ default: 3_600_000, min: 0 }),
  })
  // Runs even when single variables failed, so every problem is reported at once.
  .superRefine(
    (c, ctx) => {
      checkStorageEnv(c, ctx)
      checkWebhookEnv(c, ctx)
      if (typeof c.BACKUP_SCHEDULE === 'string' && !c.BACKUP_DEST)
        ctx.addIssue({
          code: 'custom',
          path: ['BACKUP_DEST'],
          message: 'is required with BACKUP_SCHEDULE (where scheduled backups go)',
        })
      if (
        typeof c.HISTORY_RETENTION === 'number' &&
        typeof c.HISTORY_CHECKPOINT_INTERVAL === 'number' &&
        c.HISTORY_RETENTION < c.HISTORY_CHECKPOINT_INTERVAL
      )
        ctx.addIssue({
          code: 'custom',
          path: ['HISTORY_RETENTION'],
          message: `must be at least HISTORY_CHECKPOINT_INTERVAL (${c.HISTORY_CHECKPOINT_INTERVAL} ms)`,
        })
    },
    { when: () => true },
  )

export type WorkerConfig = z.output<typeof workerConfigSchema>

/** Pure: parses `env`, throwing one AppError('CONFIG') that lists every problem. */
export const parseWorkerConfig = (env: Env): WorkerConfig => parseEnv(workerConfigSchema, env)
