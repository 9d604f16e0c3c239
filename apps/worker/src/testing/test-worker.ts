/** Test fixtures for workers (not part of the build): `@streambed/worker-app/testing`. */
import { createLogger } from '@streambed/common'
import { parseWorkerConfig } from '../config.js'
import { startWorkerApp, type RunningWorker } from '../main.js'

export interface TestWorker extends RunningWorker {
  readonly httpUrl: string
  [Symbol.asyncDispose](): Promise<void>
}

/**
 * Fast defaults for tests: compaction 200 ms after the last write, at most every 500 ms, entries
 * kept 1 s, tasks taken over after 1 s.
 */
export const fastCompaction = {
  COMPACT_IDLE_MS: '200',
  COMPACT_INTERVAL_MS: '500',
  MIN_MESSAGE_LIFETIME_MS: '1000',
  CLAIM_IDLE_MS: '1000',
}

/** An in-process worker through the real composition root; REDIS_URL and REDIS_PREFIX required. */
export const startTestWorker = async (env: Record<string, string>): Promise<TestWorker> => {
  const config = parseWorkerConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    // Worker threads cannot load the TypeScript source under vitest; spawnNode covers them.
    WORKER_THREADS: '0',
    ...fastCompaction,
    ...env,
  })
  const worker = await startWorkerApp(
    config,
    createLogger({ level: config.LOG_LEVEL, destination: process.stderr }),
  )
  return {
    ...worker,
    httpUrl: `http://127.0.0.1:${worker.port}`,
    [Symbol.asyncDispose]: () => worker.close(),
  }
}
