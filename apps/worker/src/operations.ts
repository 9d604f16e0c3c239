import { createJobs } from '@streambed/jobs'
import { createRecoveryOperations } from '@streambed/recovery'
import { s3ClientConfig } from '@streambed/storage'
import { createRedis } from '@streambed/streams'
import { createWebhooks, webhookSettings } from '@streambed/webhooks'
import type { SideJobDeps, SideJobs } from '@streambed/worker'
import type { WorkerConfig } from './config.js'

const BACKUP_SCHEDULER = 'scheduled-backup'
const MAINTENANCE_SCHEDULER = 'history-maintenance'

/**
 * The long operations a worker takes beside compaction (BullMQ: backups, restores, replays,
 * verification, history upkeep) and the schedules every worker keeps in place: backups on
 * BACKUP_SCHEDULE into dated folders under BACKUP_DEST (keeping BACKUP_KEEP), history upkeep on
 * HISTORY_MAINTENANCE_SCHEDULE. Schedules are upserted by id, so any number of workers keep one.
 * With WEBHOOK_URLS, also webhooks: each state compaction stores is announced as
 * document.created / document.updated, and this worker delivers every queued event.
 */
export const startOperations = async (
  config: WorkerConfig,
  deps: SideJobDeps,
): Promise<SideJobs> => {
  const connection = createRedis({
    url: config.REDIS_URL,
    clusterNodes: config.REDIS_CLUSTER_NODES,
    connectionName: `streambed-worker-${config.WORKER_ID}-jobs`,
    maxRetriesPerRequest: null,
    // BullMQ workers wait for jobs in BZPOPMIN (up to 10 s). A command timeout gives up on that
    // call while it stays blocked on the socket, where it takes the next job's marker: the worker
    // would never take another job.
    commandTimeoutMs: null,
  })
  const jobs = createJobs({
    connection,
    redisPrefix: config.REDIS_PREFIX,
    logger: deps.logger,
    lockMs: config.JOBS_LOCK_MS,
    operations: createRecoveryOperations({
      ...deps,
      queueShards: config.QUEUE_SHARDS,
      s3: s3ClientConfig(config),
    }),
  })
  const settings = webhookSettings(config)
  const webhooks = settings
    ? createWebhooks({
        connection,
        redisPrefix: config.REDIS_PREFIX,
        settings,
        logger: deps.logger,
        registry: deps.registry,
        loadState: (doc) => deps.storage.load(doc),
      })
    : null
  try {
    webhooks?.startDelivery()
    if (config.JOBS_CONCURRENCY > 0) jobs.startWorker(config.JOBS_CONCURRENCY)
    if (config.BACKUP_SCHEDULE && config.BACKUP_DEST) {
      const params = { dest: config.BACKUP_DEST, timestamped: true, keep: config.BACKUP_KEEP }
      await jobs.schedule(BACKUP_SCHEDULER, config.BACKUP_SCHEDULE, 'backup', params)
    } else await jobs.unschedule(BACKUP_SCHEDULER)
    await jobs.schedule(
      MAINTENANCE_SCHEDULER,
      config.HISTORY_MAINTENANCE_SCHEDULE,
      'history-maintenance',
      {
        checkpointEveryMs: config.HISTORY_CHECKPOINT_INTERVAL,
        retentionMs: config.HISTORY_RETENTION,
        packAfterMs: config.HISTORY_PACK_AFTER,
      },
    )
  } catch (err) {
    await webhooks?.close()
    await jobs.close(true)
    connection.disconnect()
    throw err
  }
  return {
    ...(webhooks
      ? {
          announce: ({ doc, previous, watermark }) =>
            webhooks.emit(
              previous === null
                ? { type: 'document.created', doc, id: watermark }
                : { type: 'document.updated', doc, id: watermark, previous },
            ),
        }
      : {}),
    close: async () => {
      await webhooks?.close()
      await jobs.close()
      connection.disconnect()
    },
  }
}
