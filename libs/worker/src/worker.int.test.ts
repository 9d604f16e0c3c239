import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import * as Y from 'yjs'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { silentLogger } from '@streambed/common'
import { type DocStorage, createFsStorage } from '@streambed/storage'
import { type Keys, createDocStreams, createKeys, createTaskQueue } from '@streambed/streams'
import { captureUpdate, uniquePrefix, useRedisServer } from '@streambed/testing'
import { createWorkerMetrics } from './metrics.js'
import { startWorker } from './worker.js'
import { startWorkerProcess, type WorkerProcessOptions } from './worker-process.js'

const fx = useRedisServer()

const updateOf = (text: string): Uint8Array => captureUpdate((d) => d.getText('t').insert(0, text))

/** Immediate compaction; takeovers only after ten minutes. */
const fastTuning = {
  // Worker threads cannot load the TypeScript source under vitest (threads.int.test.ts covers them).
  merger: { threads: 0 },
  // Long enough that a delivered-but-forgotten task would stall the test.
  claimIdleMs: 600_000,
  timing: {
    compactIntervalMs: 10,
    compactIdleMs: 10,
    minMessageLifetimeMs: 0,
    tombstoneTtlMs: 60_000,
  },
}

/** A worker on `keys` with fast tuning. */
const startFastWorker = (keys: Keys, storage: DocStorage, shards: number, concurrency: number) =>
  startWorker({
    ...fastTuning,
    consumer: 'w1',
    queue: createTaskQueue({ redis: fx.admin, blocking: fx.blocking, keys, shards }),
    streams: createDocStreams({ redis: fx.admin, keys, queueShards: shards }),
    storage,
    logger: silentLogger(),
    metrics: createWorkerMetrics(undefined, { defaultMetrics: false }),
    concurrency,
  })

it(
  'drains a backlog spread over many shards without waiting for takeovers',
  { timeout: 150_000 },
  async () => {
    const keys = createKeys(uniquePrefix('drain'))
    const dir = await mkdtemp(join(tmpdir(), 'streambed-drain-'))
    const storage = await createFsStorage({ dir })
    const streams = createDocStreams({ redis: fx.admin, keys, queueShards: 8 })
    const docs = Array.from({ length: 300 }, (_, i) => `doc-${i}`)
    for (const d of docs) await streams.append(d, updateOf(d), 'n/1')
    const worker = await startFastWorker(keys, storage, 8, 4)
    try {
      await vi.waitFor(
        async () => {
          const pipeline = fx.admin.pipeline()
          for (const d of docs) pipeline.exists(keys.stream(d))
          expect(((await pipeline.exec()) ?? []).filter(([, v]) => v === 1)).toHaveLength(0)
        },
        // Counted, not timed: a task left waiting for a takeover (claimIdleMs, 10 min) would stall
        // far past this.
        { timeout: 120_000, interval: 100 },
      )
      const stored = await storage.load('doc-299')
      const check = new Y.Doc()
      Y.applyUpdate(check, stored!.state)
      expect(check.getText('t').toString()).toBe('doc-299')
    } finally {
      await worker.stop()
      await rm(dir, { recursive: true, force: true })
    }
  },
)

it('stores tasks read together as one batch; a document that lost its compare-and-set alone comes back', async () => {
  const keys = createKeys(uniquePrefix('batch'))
  const dir = await mkdtemp(join(tmpdir(), 'streambed-batch-'))
  const fs = await createFsStorage({ dir })
  const batches: string[][] = []
  let raced = false
  const storage: DocStorage = {
    ...fs,
    compareAndSetMany: async (items) => {
      batches.push(items.map((i) => i.doc))
      const victim = items.find((i) => i.doc === 'doc-7')
      // Another worker stores doc-7 first (the same version: it read the same entries).
      if (victim && !raced) raced = await fs.compareAndSet(victim.doc, victim.expected, victim.next)
      return fs.compareAndSetMany(items)
    },
  }
  // One queue shard: the worker's first read (as many tasks as it has slots) takes every task.
  const streams = createDocStreams({ redis: fx.admin, keys, queueShards: 1 })
  const docs = Array.from({ length: 24 }, (_, i) => `doc-${i}`)
  for (const d of docs) await streams.append(d, updateOf(d), 'n/1')
  await new Promise((r) => setTimeout(r, 20)) // every document due
  const seen = new Map<string, string[]>()
  const metrics = createWorkerMetrics(undefined, { defaultMetrics: false })
  const worker = await startWorker({
    ...fastTuning,
    consumer: 'w1',
    queue: createTaskQueue({ redis: fx.admin, blocking: fx.blocking, keys, shards: 1 }),
    streams,
    storage,
    logger: silentLogger(),
    metrics,
    concurrency: 24,
    hooks: async (point, doc) => void seen.set(doc, [...(seen.get(doc) ?? []), point]),
  })
  try {
    expect(worker.batchSize).toBe(24)
    await vi.waitFor(
      async () => {
        const pipeline = fx.admin.pipeline()
        for (const d of docs) pipeline.exists(keys.stream(d))
        expect(((await pipeline.exec()) ?? []).filter(([, v]) => v === 1)).toHaveLength(0)
      },
      { timeout: 30_000, interval: 50 },
    )
    // The 24 tasks, read together, stored together; then doc-7 alone, after its conflict.
    expect(batches.map((b) => [...b].sort())).toEqual([[...docs].sort()])
    expect(raced).toBe(true)
    expect((await metrics.conflicts.get()).values[0]?.value).toBe(1)
    for (const d of docs) {
      const check = new Y.Doc()
      Y.applyUpdate(check, (await storage.load(d))!.state)
      expect(check.getText('t').toString()).toBe(d)
      // Each document passes every point in order; doc-7 twice: its conflict, then nothing new.
      const run = ['after-load', 'after-archive', 'after-persist', 'before-finish', 'after-trim']
      const expected =
        d === 'doc-7'
          ? [
              'after-load',
              'after-archive',
              'before-ack',
              'after-load',
              'before-finish',
              'after-trim',
            ]
          : run
      expect(seen.get(d)?.slice(0, expected.length), d).toEqual(expected)
      expect(seen.get(d)?.at(-1), d).toBe('before-ack')
    }
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

describe('startWorkerProcess', () => {
  let dir: string
  let storage: DocStorage
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'streambed-worker-process-'))
    storage = await createFsStorage({ dir })
  })
  afterEach(async () => {
    await storage.close()
    await rm(dir, { recursive: true, force: true })
  })

  const options = (
    prefix: string,
    over: Partial<WorkerProcessOptions> = {},
  ): WorkerProcessOptions => ({
    workerId: 'w-test',
    redis: { url: fx.url, commandTimeoutMs: 5000, allowEviction: true },
    redisPrefix: prefix,
    queueShards: 2,
    openStorage: async () => storage,
    http: { host: '127.0.0.1', port: 0 },
    logger: silentLogger(),
    worker: { ...fastTuning, concurrency: 2 },
    ...over,
  })

  it('compacts from the queue and serves /healthz, /readyz, /metrics until closed', async () => {
    const prefix = uniquePrefix('process')
    const keys = createKeys(prefix)
    const proc = await startWorkerProcess(options(prefix))
    const url = `http://127.0.0.1:${proc.port}`
    try {
      expect(proc.workerId).toBe('w-test')
      expect((await fetch(`${url}/healthz`)).status).toBe(200)
      const ready = await fetch(`${url}/readyz`)
      expect([ready.status, await ready.json()]).toEqual([200, { status: 'ready', activeTasks: 0 }])
      const streams = createDocStreams({ redis: fx.admin, keys, queueShards: 2 })
      await streams.append('doc', updateOf('hello'), 'n/1')
      await vi.waitFor(async () => expect(await fx.admin.exists(keys.stream('doc'))).toBe(0), {
        timeout: 10_000,
      })
      const check = new Y.Doc()
      Y.applyUpdate(check, (await storage.load('doc'))!.state)
      expect(check.getText('t').toString()).toBe('hello')
      const metrics = await (await fetch(`${url}/metrics`)).text()
      expect(metrics).toMatch(/^streambed_worker_tasks_total\{outcome="done"\} 1$/m)
      // A registry of its own carries the default process metrics.
      expect(metrics).toContain('process_cpu_seconds_total')
      const missing = await fetch(`${url}/docs/doc`)
      expect(missing.status).toBe(404)
    } finally {
      await proc.close()
    }
    await expect(fetch(`${url}/healthz`)).rejects.toThrow()
  })

  it('without http, listens nowhere and registers its metrics in the given registry', async () => {
    const registry = new Registry()
    const proc = await startWorkerProcess(options(uniquePrefix('shared'), { http: null, registry }))
    try {
      expect(proc.port).toBeNull()
      const text = await registry.metrics()
      expect(text).toContain('streambed_worker_active_tasks')
      expect(text).not.toContain('process_cpu_seconds_total')
    } finally {
      await proc.close()
    }
  })

  it('disconnects from Redis when storage cannot be opened', async () => {
    const clients = async () => String(await fx.admin.client('LIST'))
    await expect(
      startWorkerProcess(
        options(uniquePrefix('nostorage'), {
          workerId: 'w-nostorage',
          openStorage: () => Promise.reject(new Error('no storage here')),
        }),
      ),
    ).rejects.toThrow('no storage here')
    await vi.waitFor(async () => expect(await clients()).not.toContain('w-nostorage'))
  })
})
