import { createJobs } from '@streambed/jobs'
import { createRecoveryOperations } from '@streambed/recovery'
import { s3ClientConfig } from '@streambed/storage'
import { createRedis } from '@streambed/streams'
import type { SideJobDeps } from '@streambed/worker'
import type { WorkerConfig } from './config.js'

const BACKUP_SCHEDULER = 'scheduled-backup'
const MAINTENANCE_SCHEDULER = 'history-maintenance'

/**
 * The long operations a worker takes beside compaction (BullMQ: backups, restores, replays,
 * verification, history upkeep) and the schedules every worker keeps in place: backups on
 * BACKUP_SCHEDULE into dated folders under BACKUP_DEST (keeping BACKUP_KEEP), history upkeep on
 * HISTORY_MAINTENANCE_SCHEDULE. Schedules are upserted by id, so any number of workers keep one.
 */
export const startOperations = async (config: WorkerConfig, deps: SideJobDeps) => {
  const connection = createRedis({
    url: config.REDIS_URL,
    clusterNodes: config.REDIS_CLUSTER_NODES,
    connectionName: `streambed-worker-${config.WORKER_ID}-jobs`,
    maxRetriesPerRequest: null,
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
  try {
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
    await jobs.close(true)
    connection.disconnect()
    throw err
  }
  return {
    close: async () => {
      await jobs.close()
      connection.disconnect()
    },
  }
}
