import { Piscina } from 'piscina'
import { computeSync, type SyncAnswer, type SyncJob } from './sync-compute.js'

/** A SyncJob as sent to a sync thread: the parts packed into one transferable buffer. */
export interface PackedSyncJob {
  packed: Uint8Array
  lengths: number[]
  clientStateVectors: Uint8Array[]
  baseline: boolean
  stored: boolean
}

/** Reads with more parts than this are answered on a thread whatever their size. */
export const THREAD_ABOVE_ENTRIES = 2000

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
      const bytes = job.parts.reduce((n, p) => n + p.length, 0)
      // Many entries cost more than their bytes say (a long typing tail: 10 000 entries of ~20
      // bytes take tens of milliseconds to merge and compact).
      const large = bytes > opts.threadAboveBytes || job.parts.length > THREAD_ABOVE_ENTRIES
      if (!pool || !large) return computeSync(job)
      // One buffer, moved rather than copied: cloning each part would copy the whole ArrayBuffer
      // behind it, and the updates read from Redis are views into larger reply buffers.
      const packed = new Uint8Array(bytes)
      let offset = 0
      for (const part of job.parts) {
        packed.set(part, offset)
        offset += part.length
      }
      const task: PackedSyncJob = {
        packed,
        lengths: job.parts.map((p) => p.length),
        clientStateVectors: job.clientStateVectors,
        baseline: job.baseline,
        stored: job.stored,
      }
      return (await pool.run(task, { transferList: [packed.buffer] })) as SyncAnswer
    },
    close: async () => {
      await pool?.destroy()
    },
  }
}
