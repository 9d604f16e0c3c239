import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  CONSUMER_GROUP,
  createKeys,
  createTaskQueue,
  heartbeat,
  type Keys,
  shardOf,
} from '@streambed/streams'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import type { RecoveryDeps } from './documents.js'
import { inspectCluster, inspectDocument } from './inspect.js'
import { compact, depsOf, openSpace, writer } from './testing/world.js'

const fx = useRedisServer()

describe('inspect', () => {
  let keys: Keys
  let space: Awaited<ReturnType<typeof openSpace>>
  let deps: RecoveryDeps
  beforeEach(async () => {
    keys = createKeys(uniquePrefix('inspect'))
    space = await openSpace('fs')
    deps = depsOf(fx.admin, keys, space.storage, 3)
  })
  afterEach(() => space.close())

  const queueOf = () =>
    createTaskQueue({ redis: fx.admin, blocking: fx.blocking, keys, shards: deps.queueShards })

  it('shows a document across its stream, meta, storage, log, checkpoints and task', async () => {
    const w = writer(deps, 'doc', 1)
    await w.edit(4)
    const watermark = await compact(deps, fx.blocking, 'doc')
    const stored = (await deps.storage.load('doc'))!
    await deps.storage.putCheckpoint('doc', { upTo: stored.watermark, state: stored.state })
    const ids = await w.edit(3)

    const seen = await inspectDocument(deps, 'doc')
    expect(seen).toMatchObject({
      doc: 'doc',
      exists: true,
      stream: { length: 3, first: { id: ids[0] }, last: { id: ids.at(-1) } },
      meta: { last: ids.at(-1), ttlMs: null },
      stored: { id: watermark },
      log: { last: watermark },
      checkpoints: { count: 1, newest: { id: watermark } },
      task: { state: 'queued', shard: shardOf('doc', 3) },
    })
    expect(seen.stream!.bytes).toBeGreaterThan(100)
    expect(seen.stream!.last!.ageMs).toBeLessThan(60_000)
    expect(seen.meta!.clockClients).toBeGreaterThan(0)

    const unknown = await inspectDocument(deps, 'never')
    expect(unknown).toMatchObject({
      exists: false,
      stream: null,
      meta: null,
      task: null,
      log: null,
    })
  })

  it('follows the task from queued to delivered to delayed, and notices a lost one', async () => {
    const queue = queueOf()
    await queue.ensureGroups()
    const w = writer(deps, 'doc', 2)
    await w.edit(1)
    expect((await inspectDocument(deps, 'doc')).task).toMatchObject({ state: 'queued' })
    const [task] = await queue.read('worker-1', 10, 100)
    expect(task?.doc).toBe('doc')
    expect((await inspectDocument(deps, 'doc')).task).toMatchObject({
      state: 'delivered',
      consumer: 'worker-1',
      deliveries: 1,
      token: task!.token,
    })
    await queue.settle(task!, 60_000)
    const delayed = (await inspectDocument(deps, 'doc')).task
    expect(delayed).toMatchObject({ state: 'delayed' })
    expect(delayed?.state === 'delayed' && delayed.dueInMs).toBeGreaterThan(50_000)
    await fx.admin.hset(keys.meta('doc'), 'task', 'lost-token')
    expect((await inspectDocument(deps, 'doc')).task).toMatchObject({
      state: 'missing',
      token: 'lost-token',
    })
  })

  it('shows the cluster: documents, stream memory, queue depth, workers and nodes', async () => {
    const queue = queueOf()
    await queue.ensureGroups()
    for (const doc of ['a', 'b', 'c']) await writer(deps, doc, doc.charCodeAt(0)).edit(2)
    await compact(deps, fx.blocking, 'a')
    await writer(deps, 'stored-only', 9).edit(1)
    await compact(deps, fx.blocking, 'stored-only')
    // A worker that stopped: its consumer stays in the group and grows idle.
    await fx.admin.xgroup('CREATECONSUMER', keys.queue(0), CONSUMER_GROUP, 'worker-gone')
    await vi.waitFor(
      async () => {
        const gone = (await inspectCluster(deps)).workers.find((w) => w.consumer === 'worker-gone')
        expect(gone?.idleMs).toBeGreaterThan(300)
      },
      { timeout: 5000, interval: 50 },
    )
    const delivered = await queue.read('worker-live', 10, 10)
    expect(delivered.length).toBeGreaterThan(0)
    await heartbeat(fx.admin, keys, 'node-live', 10_000, 600_000)
    const [s] = await fx.admin.time()
    await fx.admin.zadd(keys.nodes, (Number(s) - 60) * 1000, 'node-dead')

    const seen = await inspectCluster(deps, { workerIdleMs: 250, nodeTimeoutMs: 10_000 })
    // Compaction deleted the emptied streams of a and stored-only.
    expect(seen.documents).toEqual({ stored: 2, streams: 2, total: 4 })
    expect(seen.streamBytes).toBeGreaterThan(300)
    expect(seen.queue.shards).toHaveLength(3)
    expect(seen.queue.totals.pending).toBe(delivered.length)
    expect(seen.queue.totals.queued).toBeGreaterThanOrEqual(3)
    expect(seen.workers.find((w) => w.consumer === 'worker-live')).toMatchObject({
      alive: true,
      pending: delivered.length,
    })
    expect(seen.workers.find((w) => w.consumer === 'worker-gone')).toMatchObject({
      alive: false,
      pending: 0,
    })
    expect(seen.nodes).toEqual([
      expect.objectContaining({ id: 'node-dead', alive: false }),
      expect.objectContaining({ id: 'node-live', alive: true }),
    ])
    expect(seen.nodes[0]!.ageMs).toBeGreaterThanOrEqual(59_000)
  })
})
