import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { expect, it, vi } from 'vitest'
import { silentLogger } from '@streambed/common'
import { type DocStorage, createFsStorage } from '@streambed/storage'
import { type Keys, createDocStreams, createKeys, createTaskQueue } from '@streambed/streams'
import { captureUpdate, uniquePrefix, useRedisServer } from '@streambed/testing'
import { createWorkerMetrics } from './metrics.js'
import { startWorker } from './worker.js'

const fx = useRedisServer()

const updateOf = (text: string): Uint8Array => captureUpdate((d) => d.getText('t').insert(0, text))

/** A worker on `keys` with immediate compaction; takeovers only after a minute. */
const startFastWorker = (keys: Keys, storage: DocStorage, shards: number, concurrency: number) =>
  startWorker({
    consumer: 'w1',
    queue: createTaskQueue({ redis: fx.admin, blocking: fx.blocking, keys, shards }),
    streams: createDocStreams({ redis: fx.admin, keys, queueShards: shards }),
    storage,
    logger: silentLogger(),
    metrics: createWorkerMetrics(undefined, { defaultMetrics: false }),
    concurrency,
    // Worker threads cannot load the TypeScript source under vitest (threads.int.test.ts covers them).
    merger: { threads: 0 },
    // Long enough that a delivered-but-forgotten task would stall the test.
    claimIdleMs: 60_000,
    timing: {
      compactIntervalMs: 10,
      compactIdleMs: 10,
      minMessageLifetimeMs: 0,
      tombstoneTtlMs: 60_000,
    },
  })

it('drains a backlog spread over many shards without waiting for takeovers', async () => {
  const keys = createKeys(uniquePrefix('drain'))
  const dir = await mkdtemp(join(tmpdir(), 'streambed-drain-'))
  const storage = await createFsStorage({ dir })
  const streams = createDocStreams({ redis: fx.admin, keys, queueShards: 8 })
  const docs = Array.from({ length: 300 }, (_, i) => `doc-${i}`)
  for (const d of docs) await streams.append(d, updateOf(d), 'n/1')
  const started = performance.now()
  const worker = await startFastWorker(keys, storage, 8, 4)
  try {
    await vi.waitFor(
      async () => {
        const pipeline = fx.admin.pipeline()
        for (const d of docs) pipeline.exists(keys.stream(d))
        expect(((await pipeline.exec()) ?? []).filter(([, v]) => v === 1)).toHaveLength(0)
      },
      { timeout: 20_000, interval: 100 },
    )
    expect(performance.now() - started).toBeLessThan(15_000)
    const stored = await storage.load('doc-299')
    const check = new Y.Doc()
    Y.applyUpdate(check, stored!.state)
    expect(check.getText('t').toString()).toBe('doc-299')
  } finally {
    await worker.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

it('merges entries whose ids fell below the stored watermark instead of trimming them unread', async () => {
  const keys = createKeys(uniquePrefix('anomaly'))
  const dir = await mkdtemp(join(tmpdir(), 'streambed-anomaly-'))
  const storage = await createFsStorage({ dir })
  const streams = createDocStreams({ redis: fx.admin, keys, queueShards: 2 })
  // Storage is at a watermark an hour ahead of Redis' clock, and Redis has no meta for the
  // document (as after Redis lost its data): new entries get ids below the watermark.
  const ahead = `${Date.now() + 3_600_000}-0`
  const base = new Y.Doc()
  base.getText('t').insert(0, 'stored ')
  await storage.compareAndSet('doc', null, { state: Y.encodeStateAsUpdate(base), watermark: ahead })
  const later = new Y.Doc()
  Y.applyUpdate(later, Y.encodeStateAsUpdate(base))
  let update: Uint8Array = new Uint8Array()
  later.on('update', (u: Uint8Array) => (update = u))
  later.getText('t').insert(7, 'and new')
  await streams.append('doc', update, 'n/1')
  const worker = await startFastWorker(keys, storage, 2, 2)
  try {
    await vi.waitFor(async () => expect(await fx.admin.exists(keys.stream('doc'))).toBe(0), {
      timeout: 10_000,
    })
    const stored = await storage.load('doc')
    expect(stored?.watermark).toBe(ahead)
    const check = new Y.Doc()
    Y.applyUpdate(check, stored!.state)
    expect(check.getText('t').toString()).toBe('stored and new')
  } finally {
    await worker.stop()
    await rm(dir, { recursive: true, force: true })
  }
})
