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
export const createSyncPool = (opts: {
  threads: number
  threadAboveBytes: number
  /** An idle thread exits after this long (its heap keeps the peak of the largest parse). */
  idleMs: number
}): SyncPool => {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js'
  const pool =
    opts.threads > 0
      ? new Piscina({
          filename: new URL(`./sync-thread${ext}`, import.meta.url).href,
          // Started on demand and retired when idle: a thread's V8 heap keeps the peak of the largest
          // document it parsed (measured: ~200 MiB after 10 MiB joins) until the thread exits. The
          // price is ~100 ms (loading Yjs) on the first large join after an idle period.
          minThreads: 0,
          maxThreads: opts.threads,
          idleTimeout: opts.idleMs,
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
