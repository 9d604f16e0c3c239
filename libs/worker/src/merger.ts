import { Piscina } from 'piscina'
import { snapshot } from './snapshot.js'
import type { SnapshotJob } from './snapshot-thread.js'

export interface Merger {
  /** The snapshot of `state` + `updates` (see snapshot.ts). */
  merge(state: Uint8Array | null, updates: readonly Uint8Array[]): Promise<Uint8Array>
  /** Whether merge(state, updates) runs on a worker thread (a large document). */
  threaded(state: Uint8Array | null, updates: readonly Uint8Array[]): boolean
  close(): Promise<void>
}

export interface MergerOptions {
  /** Inputs larger than this (bytes, state + updates) are merged on a worker thread. */
  threadAboveBytes: number
  /** Worker threads for large documents; 0 merges everything inline. */
  threads: number
}

/**
 * Small documents (the common case: ms of work) merge inline. Large ones go to a pool of worker
 * threads, so a multi-megabyte document does not stall the event loop that serves every other
 * task in flight (their Redis and storage I/O keeps moving).
 */
export const createMerger = (opts: MergerOptions): Merger => {
  // Running from TypeScript source (tests, `npm start` before build) the thread loads the .ts file.
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js'
  const pool =
    opts.threads > 0
      ? new Piscina({
          filename: new URL(`./snapshot-thread${ext}`, import.meta.url).href,
          // Started with the process: a cold thread first has to load Yjs (~100 ms).
          minThreads: opts.threads,
          maxThreads: opts.threads,
        })
      : null
  const threaded: Merger['threaded'] = (state, updates) =>
    pool !== null &&
    (state?.length ?? 0) + updates.reduce((n, u) => n + u.length, 0) > opts.threadAboveBytes
  return {
    threaded,
    merge: async (state, updates) => {
      if (!pool || !threaded(state, updates)) return snapshot(state, updates)
      const job: SnapshotJob = { state, updates: [...updates] }
      return (await pool.run(job)) as Uint8Array
    },
    close: async () => {
      await pool?.destroy()
    },
  }
}
