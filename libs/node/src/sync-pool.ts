import { Piscina } from 'piscina'
import { computeSync, type SyncAnswer, type SyncJob } from './sync-compute.js'

export interface SyncPool {
  compute(job: SyncJob): Promise<SyncAnswer>
  close(): Promise<void>
}

/**
 * Answers for documents above `threadAboveBytes` are computed on worker threads, so a join of a
 * multi-megabyte document does not stall deliveries of every other document on the node. Small
 * documents stay inline, where a thread hop would cost more than the work.
 */
export const createSyncPool = (opts: { threads: number; threadAboveBytes: number }): SyncPool => {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js'
  const pool =
    opts.threads > 0
      ? new Piscina({
          filename: new URL(`./sync-thread${ext}`, import.meta.url).href,
          // Started with the process: a cold thread first has to load Yjs (~100 ms).
          minThreads: opts.threads,
          maxThreads: opts.threads,
        })
      : null
  return {
    compute: async (job) => {
      if (!pool || job.merged.length <= opts.threadAboveBytes) return computeSync(job)
      return (await pool.run(job)) as SyncAnswer
    },
    close: async () => {
      await pool?.destroy()
    },
  }
}
