import { describe, expect, it } from 'vitest'
import { AppError } from '@streambed/common'
import { parseWorkerConfig } from './config.js'

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    parseWorkerConfig(env)
  } catch (err) {
    if (err instanceof AppError && err.code === 'CONFIG') return err.message.split('\n').slice(1)
    throw err
  }
  return []
}

describe('parseWorkerConfig', () => {
  it('parses an empty environment into the documented defaults', () => {
    expect(parseWorkerConfig({})).toMatchObject({
      PORT: 8081,
      WORKER_CONCURRENCY: 64,
      WORKER_BATCH_SIZE: 64,
      WEBHOOK_DEBOUNCE_MS: 1000,
      WEBHOOK_ATTEMPTS: 12,
      COMPACT_INTERVAL_MS: 30_000,
      COMPACT_IDLE_MS: 2_000,
      MIN_MESSAGE_LIFETIME_MS: 60_000,
      CLAIM_IDLE_MS: 30_000,
      TOMBSTONE_TTL_MS: 7 * 24 * 3600 * 1000,
      WORKER_THREADS: 1,
      WORKER_THREAD_ABOVE_BYTES: 512 * 1024,
      STORAGE: 'fs',
      QUEUE_SHARDS: 8,
      REDIS_URL: 'redis://127.0.0.1:6379',
    })
  })

  it('names a webhook endpoint without a secret, and a malformed endpoint', () => {
    expect(problemsOf({ WEBHOOK_URLS: 'https://hooks.example/streambed' })).toEqual([
      '  WEBHOOK_SECRET: is required with WEBHOOK_URLS (it signs every delivery)',
    ])
    expect(
      problemsOf({ WEBHOOK_URLS: 'ftp://x', WEBHOOK_SECRET: 'a-secret-of-16-chars' }),
    ).toHaveLength(1)
  })

  it('gives each worker its own id', () => {
    expect(parseWorkerConfig({}).WORKER_ID).not.toBe(parseWorkerConfig({}).WORKER_ID)
  })

  it('reports every problem at once, naming each variable', () => {
    expect(
      problemsOf({ WORKER_CONCURRENCY: '0', COMPACT_IDLE_MS: 'soon', STORAGE: 'postgres' }),
    ).toEqual([
      '  WORKER_CONCURRENCY: expected an integer 1..1024, got "0"',
      '  COMPACT_IDLE_MS: expected an integer >= 10, got "soon"',
      '  DATABASE_URL: is required when STORAGE=postgres; expected a URL like postgres://user:pass@host:5432/db',
    ])
  })
})
