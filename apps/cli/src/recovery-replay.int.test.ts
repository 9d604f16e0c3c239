/**
 * A Redis without AOF loses its data after a worker archived entries to the update log but before
 * it stored them (issue 9): `streambed replay --from-log` appends them again through the write
 * path. Documents nobody has open get their edits back; clients that were connected reconnect
 * after the epoch change (4509), resend what they hold, and converge with nothing lost or doubled.
 * And the runbook's step for data flushed while the nodes stayed connected: restart the nodes.
 */
import * as Y from 'yjs'
import { expect, it, vi } from 'vitest'
import { createLogger } from '@streambed/common'
import { startTestNode } from '@streambed/server/testing'
import { openStorage, type DocStorage } from '@streambed/storage'
import {
  connectClient,
  expectedEntries,
  missingFrom,
  startBalancer,
  startTyping,
  type TestClient,
  uniquePrefix,
  useRedisServer,
} from '@streambed/testing'
import { parseWorkerConfig } from '@streambed/worker-app'
import { fastCompaction, startTestWorker } from '@streambed/worker-app/testing'
import { spawnNode } from './testing/nodes.js'
import {
  closeCodes,
  describeRun,
  jsonOf,
  labelledJson,
  metricOf,
  runCli,
  startLosableStorage,
} from './testing/recovery.js'
import { storedLog } from './testing/watch.js'

const redis = useRedisServer({ aof: false })

const openFor = (env: Record<string, string>): Promise<DocStorage> =>
  openStorage(parseWorkerConfig(env), createLogger({ level: 'silent' }))

/** The array `log` of the stored state with every archived entry after it applied. */
const storedAndArchived = async (storage: DocStorage, doc: string): Promise<string[]> => {
  const stored = await storage.load(doc)
  const ydoc = new Y.Doc()
  if (stored) Y.applyUpdate(ydoc, stored.state)
  for (const e of await storage.readLog(doc, stored ? { after: stored.watermark } : {}))
    Y.applyUpdate(ydoc, e.update)
  const log = ydoc.getArray<string>('log').toArray()
  ydoc.destroy()
  return log
}

const push = (client: TestClient, entries: readonly string[]) => {
  const log = client.doc.getArray<string>('log')
  for (const e of entries) log.push([e])
}

const entries = (doc: string, phase: string, n: number) =>
  Array.from({ length: n }, (_, k) => `${doc}:${phase}:${k}`)

interface ReplaySummary {
  source: string
  documents: number
  candidates: number
  appended: number
  changed: { doc: string; appended: number }[]
}

it('replay --from-log brings back edits archived but not stored when Redis lost its data; connected clients converge', async () => {
  const backend = await startLosableStorage('fs')
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix('replay'), ...backend.env }
  const storage = await openFor(env)
  try {
    await using node = await startTestNode(env)
    const gone = ['gone/a', 'gone/b', 'gone/c']
    const writers = gone.map((doc) => connectClient(node.url, doc))
    const live = [connectClient(node.url, 'live'), connectClient(node.url, 'live')]
    await Promise.all([...writers, ...live].map((c) => c.synced()))
    const typists = live.map((c, i) => startTyping(c, `live${i}`, 50))

    // Phase 1 is compacted and stored.
    {
      await using _worker = await startTestWorker(env)
      gone.forEach((doc, i) => push(writers[i]!, entries(doc, 'p1', 4)))
      await vi.waitFor(
        async () => {
          for (const doc of gone)
            expect(await storedLog(storage, doc)).toEqual(entries(doc, 'p1', 4))
        },
        { timeout: 20_000, interval: 100 },
      )
    }

    // Phase 2: a worker archives every compaction to the update log, then stalls before storing.
    await using stalled = await spawnNode(
      { ...env, ...fastCompaction, STREAMBED_TEST_HOOKS: 'delay:after-archive:600000' },
      { command: 'worker' },
    )
    gone.forEach((doc, i) => push(writers[i]!, entries(doc, 'p2', 5)))
    const p12 = (doc: string) => [...entries(doc, 'p1', 4), ...entries(doc, 'p2', 5)]
    await vi.waitFor(
      async () => {
        for (const doc of gone) expect(await storedAndArchived(storage, doc)).toEqual(p12(doc))
      },
      { timeout: 20_000, interval: 100 },
    )
    for (const doc of gone) expect(await storedLog(storage, doc)).toEqual(entries(doc, 'p1', 4))
    // The writers leave: only the update log holds phase 2 now. The live clients stop typing and
    // converge; they stay connected.
    for (const w of writers) w.destroy()
    for (const t of typists) t.stop()
    const typed = expectedEntries(typists)
    await vi.waitFor(() => live.forEach((c) => expect(missingFrom(c, typed)).toEqual([])))
    const codes = live.map(closeCodes)

    // The loss: the stalled worker dies, Redis restarts empty (no AOF).
    await stalled.crash()
    await redis.server.kill()
    await redis.server.start()

    // The node notices the new epoch and has its clients resync (4509); they resend what they hold.
    await vi.waitFor(() => codes.forEach((c) => expect(c).toContain(4509)), { timeout: 20_000 })
    await Promise.all(live.map((c) => c.synced(30_000)))
    // What the StreambedStreamResyncs alert counts.
    expect(
      await metricOf(node.httpUrl, 'streambed_connections_closed_total', '{code="4509"}'),
    ).toBeGreaterThanOrEqual(live.length)
    // Documents nobody had open lost phase 2: a client joining now sees phase 1 only.
    const observer = connectClient(node.url, 'gone/a')
    await observer.synced()
    expect(observer.doc.getArray('log').toArray()).toEqual(entries('gone/a', 'p1', 4))
    const observerCloses = closeCodes(observer)

    // What the operator sees first: the log reaches past the stored watermark.
    const inspected = jsonOf<{
      stored: { id: string } | null
      log: { last: string; entries: number } | null
    }>(await runCli(['inspect', 'gone/a', '--json'], env))
    expect(inspected.stored).not.toBeNull()
    expect(inspected.log!.entries).toBeGreaterThan(0)
    expect(inspected.log!.last > inspected.stored!.id).toBe(true)

    await using worker = await startTestWorker(env)
    const replay = await runCli(['replay', '--from-log'], env)
    expect(replay.code, describeRun(replay)).toBe(0)
    expect(replay.stderr).toMatch(/^replay: operation replay-\S+$/m)
    const summary = labelledJson<ReplaySummary>(replay, 'replay complete')
    expect(summary.source).toBe('log')
    expect(summary.documents).toBe(gone.length + 1)
    expect(summary.changed.map((c) => c.doc).sort()).toEqual(expect.arrayContaining(gone))

    // The observer receives the replayed edits live, without reconnecting.
    await vi.waitFor(() => expect(observer.doc.getArray('log').toArray()).toEqual(p12('gone/a')))
    expect(observerCloses).toEqual([])
    for (const doc of gone) {
      const fresh = connectClient(node.url, doc)
      await fresh.synced()
      expect(fresh.doc.getArray('log').toArray(), doc).toEqual(p12(doc))
      fresh.destroy()
    }
    // The live document: every entry once, on the connected clients and on a fresh one.
    const fresh = connectClient(node.url, 'live')
    await fresh.synced()
    for (const c of [...live, fresh]) {
      expect(missingFrom(c, typed)).toEqual([])
      expect(c.doc.getArray('log').length).toBe(typed.size)
    }

    // The worker compacts what came back: its queue drains.
    await vi.waitFor(
      async () => {
        expect(await metricOf(worker.httpUrl, 'streambed_compactions_total')).toBeGreaterThan(0)
        expect(await metricOf(worker.httpUrl, 'streambed_queue_tasks', '{state="queued"}')).toBe(0)
        expect(await metricOf(worker.httpUrl, 'streambed_queue_tasks', '{state="pending"}')).toBe(0)
      },
      { timeout: 20_000, interval: 200 },
    )

    // A second replay finds nothing to add.
    const again = jsonOf<ReplaySummary>(
      await runCli(['replay', '--from-log', '--inline', '--json'], env),
    )
    expect(again).toMatchObject({ source: 'log', appended: 0, changed: [] })
    for (const c of [observer, fresh, ...live]) c.destroy()
  } finally {
    await storage.close()
    await backend.close()
  }
}, 120_000)

it('after a FLUSHALL under running nodes, restarting the nodes has every client resync: nothing lost', async () => {
  const backend = await startLosableStorage('fs')
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix('flushed'), ...backend.env }
  try {
    await using _worker = await startTestWorker(env)
    let node = await startTestNode(env)
    await using lb = await startBalancer([node.port])
    try {
      const clients = [connectClient(lb.url, 'doc'), connectClient(lb.url, 'doc')]
      await Promise.all(clients.map((c) => c.synced()))
      const typists = clients.map((c, i) => startTyping(c, `c${i}`, 40))
      await vi.waitFor(() => typists.forEach((t) => expect(t.typed).toBeGreaterThan(10)))
      await redis.admin.flushall()
      // Typing goes on; the node is restarted (a rolling restart, one node here).
      await vi.waitFor(() => typists.forEach((t) => expect(t.typed).toBeGreaterThan(20)))
      const next = await startTestNode(env)
      lb.setBackends([next.port])
      await node.close()
      node = next
      await vi.waitFor(() => typists.forEach((t) => expect(t.disconnects).toBeGreaterThan(0)))
      await vi.waitFor(() => typists.forEach((t) => expect(t.typed).toBeGreaterThan(30)))
      for (const t of typists) t.stop()
      const typed = expectedEntries(typists)
      await vi.waitFor(() => clients.forEach((c) => expect(missingFrom(c, typed)).toEqual([])), {
        timeout: 20_000,
      })
      const fresh = connectClient(lb.url, 'doc')
      await fresh.synced()
      expect(new Set(fresh.doc.getArray<string>('log').toArray())).toEqual(typed)
      expect(fresh.doc.getArray('log').length).toBe(typed.size)
      for (const c of [...clients, fresh]) c.destroy()
    } finally {
      await node.close()
    }
  } finally {
    await backend.close()
  }
}, 120_000)
