import { describe, expect, it, vi } from 'vitest'
import { createLogger } from '@streambed/common'
import { startTestNode } from '@streambed/server/testing'
import { openStorage, type DocStorage } from '@streambed/storage'
import {
  connectClient,
  startPostgresServer,
  uniquePrefix,
  type TestClient,
  useRedisServer,
} from '@streambed/testing'
import { parseWorkerConfig } from '@streambed/worker-app'
import { fastCompaction, startTestWorker } from '@streambed/worker-app/testing'
import { startBackend } from './testing/backends.js'
import { spawnNode } from './testing/nodes.js'
import { storedLog, watchWatermark } from './testing/watch.js'

const redis = useRedisServer()

const openFor = (env: Record<string, string>): Promise<DocStorage> =>
  openStorage(parseWorkerConfig(env), createLogger({ level: 'silent' }))

/** Clients pushing `<label>:<n>` into the array `log` every `everyMs`. */
const typeInto = (clients: TestClient[], everyMs = 20) => {
  const counts = clients.map(() => 0)
  const timers = clients.map((c, i) =>
    setInterval(() => c.doc.getArray<string>('log').push([`c${i}:${counts[i]!++}`]), everyMs),
  )
  return {
    stop: () => timers.forEach(clearInterval),
    /** Entries typed so far, by all clients. */
    typed: () => counts.reduce((a, b) => a + b, 0),
    expected: () =>
      new Set(
        clients.flatMap((_, i) => Array.from({ length: counts[i]! }, (_, n) => `c${i}:${n}`)),
      ),
  }
}

/** Waits until the document is fully compacted: its stream key is gone and storage holds `expected`. */
const expectFullyCompacted = async (
  storage: DocStorage,
  prefix: string,
  doc: string,
  expected: Set<string>,
  timeout = 20_000,
) => {
  await vi.waitFor(
    async () => {
      expect(await redis.admin.exists(`${prefix}:v1:{${doc}}:s`)).toBe(0)
      const log = await storedLog(storage, doc)
      expect(new Set(log)).toEqual(expected)
      // Every write exactly once: no entry was applied twice or lost.
      expect(log.length).toBe(expected.size)
    },
    { timeout, interval: 200 },
  )
}

const metric = async (httpUrl: string, name: string): Promise<number> => {
  const text = await (await fetch(`${httpUrl}/metrics`)).text()
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0)
}

describe('a worker crashing at each step of a compaction', () => {
  const points = [
    'after-load',
    'after-archive',
    'after-persist',
    'after-trim',
    'before-ack',
  ] as const
  it.concurrent.each(points)('loses nothing and never regresses when killed %s', async (point) => {
    const backend = await startBackend('fs')
    const prefix = uniquePrefix(`crash-${point}`)
    const env = { REDIS_URL: redis.url, REDIS_PREFIX: prefix, ...backend.env, ...fastCompaction }
    const storage = await openFor(env)
    try {
      await using node = await startTestNode(env)
      const clients = [connectClient(node.url, 'doc'), connectClient(node.url, 'doc')]
      await Promise.all(clients.map((c) => c.synced()))
      const watermarks = watchWatermark(storage, 'doc')
      const typing = typeInto(clients)
      const doomed = await spawnNode(
        { ...env, STREAMBED_TEST_HOOKS: `crash:${point}` },
        // The hook may fire before the worker logs "worker started": don't wait for that line.
        { command: 'worker', waitReady: false },
      )
      expect(
        await Promise.race([
          doomed.proc.exited,
          // Counted from the spawn: five of these start at once on shared cores, and loading the
          // sources is most of the time.
          new Promise((r) => setTimeout(() => r('alive'), 60_000)),
        ]),
      ).toBe('SIGKILL')
      // A second worker takes the dead one's task over (CLAIM_IDLE_MS) and carries on.
      await using _rescuer = await startTestWorker(env)
      await new Promise((r) => setTimeout(r, 800))
      typing.stop()
      const expected = typing.expected()
      await expectFullyCompacted(storage, prefix, 'doc', expected)
      expect(watermarks.stop()).toBeNull()
      expect(watermarks.seen.length).toBeGreaterThan(0)
      expect(watermarks.regressions()).toEqual([])
      const fresh = connectClient(node.url, 'doc')
      await fresh.synced()
      expect(new Set(fresh.doc.getArray('log').toArray())).toEqual(expected)
      for (const c of [...clients, fresh]) c.destroy()
    } finally {
      await storage.close()
      await backend.close()
    }
  }, 150_000)
})

describe('workers racing on one hot document', () => {
  it.concurrent.each([2, 4])(
    '%i workers racing while writers type 2000 entries: union of all writes, monotonic watermark',
    async (count) => {
      const backend = await startBackend('fs')
      const prefix = uniquePrefix(`race-${count}`)
      // Slow compactions plus a short takeover time: other workers claim a task while its holder is
      // still working on it, so compactions of the same document overlap.
      const env = {
        REDIS_URL: redis.url,
        REDIS_PREFIX: prefix,
        ...backend.env,
        ...fastCompaction,
        COMPACT_INTERVAL_MS: '100',
        CLAIM_IDLE_MS: '100',
        STREAMBED_TEST_HOOKS: 'delay:after-load:150',
      }
      const storage = await openFor(env)
      try {
        await using node = await startTestNode(env)
        const workers = await Promise.all(Array.from({ length: count }, () => startTestWorker(env)))
        const clients = [
          connectClient(node.url, 'hot'),
          connectClient(node.url, 'hot'),
          connectClient(node.url, 'hot'),
        ]
        await Promise.all(clients.map((c) => c.synced()))
        const watermarks = watchWatermark(storage, 'hot')
        const typing = typeInto(clients, 30)
        // Count the work, not the time: the workers race for as long as the writers need to type
        // 2000 entries (about 20 s unloaded; a loaded machine simply takes longer).
        await vi.waitFor(() => expect(typing.typed()).toBeGreaterThan(2000), {
          timeout: 90_000,
          interval: 200,
        })
        typing.stop()
        const expected = typing.expected()
        await expectFullyCompacted(storage, prefix, 'hot', expected, 30_000)
        expect(watermarks.stop()).toBeNull()
        expect(watermarks.regressions()).toEqual([])
        expect(watermarks.seen.length).toBeGreaterThan(10)
        // They really raced: some compare-and-sets were lost to another worker.
        const conflicts = (
          await Promise.all(
            workers.map((w) => metric(w.httpUrl, 'streambed_storage_conflicts_total')),
          )
        ).reduce((a, b) => a + b, 0)
        expect(conflicts).toBeGreaterThan(0)
        for (const c of clients) c.destroy()
        await Promise.all(workers.map((w) => w.close()))
      } finally {
        await storage.close()
        await backend.close()
      }
    },
    150_000,
  )
})

it('compacts a write that lands while a worker is about to delete the idle stream', async () => {
  const backend = await startBackend('fs')
  const prefix = uniquePrefix('orphan')
  const env = {
    REDIS_URL: redis.url,
    REDIS_PREFIX: prefix,
    ...backend.env,
    ...fastCompaction,
    MIN_MESSAGE_LIFETIME_MS: '0',
    STREAMBED_TEST_HOOKS: 'delay:before-finish:1500',
  }
  const storage = await openFor(env)
  try {
    await using node = await startTestNode(env)
    await using _worker = await startTestWorker(env)
    const client = connectClient(node.url, 'doc')
    await client.synced()
    client.doc.getArray<string>('log').push(['first'])
    // The worker stored "first" and now waits before finish-2.lua would delete the idle stream.
    await vi.waitFor(async () => expect(await storedLog(storage, 'doc')).toEqual(['first']), {
      timeout: 10_000,
    })
    client.doc.getArray<string>('log').push(['second'])
    await vi.waitFor(async () =>
      expect(await redis.admin.xlen(`${prefix}:v1:{doc}:s`)).toBeGreaterThan(0),
    )
    // finish sees the new entry ("dirty"), keeps the task, and the next round stores it.
    await expectFullyCompacted(storage, prefix, 'doc', new Set(['first', 'second']))
    client.destroy()
  } finally {
    await storage.close()
    await backend.close()
  }
})

it('keeps serving while Postgres is down; workers retry; nothing is lost after it is back', async () => {
  await using pg = await startPostgresServer()
  const prefix = uniquePrefix('pg-down')
  const env = {
    REDIS_URL: redis.url,
    REDIS_PREFIX: prefix,
    STORAGE: 'postgres',
    DATABASE_URL: pg.url,
    ...fastCompaction,
  }
  const storage = await openFor(env)
  try {
    await using node = await startTestNode(env)
    await using worker = await startTestWorker(env)
    const [alice, bob] = [connectClient(node.url, 'doc'), connectClient(node.url, 'doc')]
    await Promise.all([alice.synced(), bob.synced()])
    alice.doc.getArray<string>('log').push(['before'])
    await vi.waitFor(async () => expect(await storedLog(storage, 'doc')).toEqual(['before']), {
      timeout: 10_000,
    })

    await pg.stop()
    const typing = typeInto([alice, bob], 50)
    // Connected clients keep collaborating through the stream while storage is down: bob
    // receives what alice types (counted, not timed), and the worker fails and says so.
    await vi.waitFor(
      () =>
        expect(
          bob.doc
            .getArray<string>('log')
            .toArray()
            .filter((e) => e.startsWith('c0:')).length,
        ).toBeGreaterThan(25),
      { timeout: 60_000 },
    )
    await vi.waitFor(
      async () =>
        expect(await metric(worker.httpUrl, 'streambed_compaction_failures_total')).toBeGreaterThan(
          0,
        ),
      { timeout: 30_000 },
    )
    expect((await fetch(`${worker.httpUrl}/readyz`)).status).toBe(503)

    await pg.start()
    typing.stop()
    const expected = typing.expected()
    expected.add('before')
    await expectFullyCompacted(storage, prefix, 'doc', expected, 30_000)
    expect((await fetch(`${worker.httpUrl}/readyz`)).status).toBe(200)
    const fresh = connectClient(node.url, 'doc')
    await fresh.synced()
    expect(new Set(fresh.doc.getArray('log').toArray())).toEqual(expected)
    for (const c of [alice, bob, fresh]) c.destroy()
  } finally {
    await storage.close()
  }
})

it('finishes the task in hand on SIGTERM, then exits 0', async () => {
  const backend = await startBackend('fs')
  const prefix = uniquePrefix('sigterm')
  const env = {
    REDIS_URL: redis.url,
    REDIS_PREFIX: prefix,
    ...backend.env,
    ...fastCompaction,
    MIN_MESSAGE_LIFETIME_MS: '0',
  }
  const storage = await openFor(env)
  try {
    await using node = await startTestNode(env)
    const worker = await spawnNode(
      { ...env, LOG_LEVEL: 'debug', STREAMBED_TEST_HOOKS: 'delay:after-archive:1500' },
      { command: 'worker' },
    )
    const client = connectClient(node.url, 'doc')
    await client.synced()
    client.doc.getArray<string>('log').push(['one', 'two'])
    // The compaction has begun and will sleep 1.5 s after archiving, before storing.
    await worker.proc.waitForLine(/"msg":"compacting"/)
    expect(await storedLog(storage, 'doc')).toEqual([])
    await worker.stop()
    expect(await worker.proc.exited).toBe(0)
    // The interrupted compaction completed: stored, stream deleted, nothing left pending.
    expect(await storedLog(storage, 'doc')).toEqual(['one', 'two'])
    expect(await redis.admin.exists(`${prefix}:v1:{doc}:s`)).toBe(0)
    expect(worker.proc.output.some((l) => l.includes('worker stopped'))).toBe(true)
    client.destroy()
  } finally {
    await storage.close()
    await backend.close()
  }
})
