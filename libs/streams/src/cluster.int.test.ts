/**
 * The stream layer on a real Redis Cluster (3 masters, 3 replicas): appends that ring doorbells on
 * sharded pub/sub and queue their task on another slot, every crash point between the two slots'
 * writes repaired by the reconciler, task reads shard by shard, and WAIT for replicas.
 */
import { Redis as Standalone } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { idTimeMs, isAppError } from '@streambed/common'
import { captureUpdate, uniquePrefix, useRedisCluster } from '@streambed/testing'
import { type ChannelMessage, decodeChannelMessage } from './channel.js'
import { createDocStreams } from './doc-streams.js'
import { createKeys, type Keys, shardOf } from './keys.js'
import { connectRedis, createRedis, masterFor, type Redis } from './redis.js'
import { restoreTail } from './restore-tail.js'
import { scripts } from './scripts.js'
import { createTaskQueue } from './task-queue.js'

const rc = useRedisCluster()
const URL = 'redis://127.0.0.1:6379'
const SHARDS = 4
/** Marks younger than this are left alone by the reconciler (an append may be enqueuing them). */
const GRACE_MS = 300

const update = (text: string): Uint8Array =>
  captureUpdate((d) => d.getArray<string>('log').push([text]))

const clients: Redis[] = []
/** A connected cluster client as every Streambed process makes it (createRedis). */
const connect = async (opts: { subscriber?: boolean } = {}): Promise<Redis> => {
  const redis = createRedis({ url: URL, clusterNodes: rc.cluster.seeds, ...opts })
  redis.on('error', () => {})
  clients.push(redis)
  await connectRedis(redis, URL)
  return redis
}
let redis: Redis
beforeAll(async () => {
  redis = await connect()
})
afterAll(() => {
  for (const c of clients) c.disconnect()
})

const addressOf = (r: Standalone) => `${r.options.host}:${r.options.port}`

/** A document name whose stream and task queue shard are served by different masters. */
const docAcrossMasters = (keys: Keys, label: string): string => {
  for (let i = 0; ; i++) {
    const doc = `${label}-${i}`
    const docMaster = addressOf(masterFor(redis, keys.stream(doc)))
    const queueMaster = addressOf(masterFor(redis, keys.queue(shardOf(doc, SHARDS))))
    if (docMaster !== queueMaster) return doc
  }
}

/** Doorbells of `doc` as a server node receives them (a sharded subscriber). */
const listen = async (keys: Keys, doc: string) => {
  const sub = await connect({ subscriber: true })
  const bells: (ChannelMessage & { kind: 'update' })[] = []
  sub.on('smessageBuffer', (channel: Buffer, message: Buffer) => {
    const msg = decodeChannelMessage(message)
    if (channel.toString() === keys.channel(doc) && msg?.kind === 'update') bells.push(msg)
  })
  await sub.ssubscribe(keys.channel(doc))
  return bells
}

/** The queue entries of `doc` as [doc, token] (XRANGE of its shard). */
const queued = async (keys: Keys, doc: string): Promise<string[]> => {
  const entries = (await redis.xrange(keys.queue(shardOf(doc, SHARDS)), '-', '+')) as [
    string,
    string[],
  ][]
  return entries
    .map(
      ([, f]) =>
        Object.fromEntries([
          [f[0], f[1]],
          [f[2], f[3]],
        ]) as Record<string, string>,
    )
    .filter((f) => f.d === doc)
    .map((f) => f.t as string)
}

/** A direct connection to the replica of the master holding `key`, reading (READONLY). */
const replicaOf = async (key: string): Promise<Standalone> => {
  const master = await rc.cluster.masterOf(key)
  const replica = (await rc.cluster.replicas()).find((r) => r.masterId === master.id)
  if (!replica) throw new Error(`master ${master.address} has no replica`)
  const [host, port] = replica.address.split(':') as [string, string]
  const conn = new Standalone({ host, port: Number(port), lazyConnect: true })
  conn.on('error', () => {})
  await conn.connect()
  await conn.call('READONLY')
  return conn
}

describe('appends on a Redis Cluster', () => {
  it('append to the stream, ring the doorbell on the shard channel and queue the task on another master', async () => {
    const keys = createKeys(uniquePrefix('cl-append'))
    const doc = docAcrossMasters(keys, 'doc')
    const streams = createDocStreams({ redis, keys, queueShards: SHARDS })
    const bells = await listen(keys, doc)

    const first = update('a')
    const a = (await streams.append(doc, first, 'n/1'))!
    const b = (await streams.append(doc, update('b'), 'n/2'))!
    expect([a.newTask, b.newTask]).toEqual([true, false])
    expect(b.prev).toBe(a.id)
    await vi.waitFor(() =>
      expect(bells.map((m) => [m.id, m.prev, m.origin])).toEqual([
        [a.id, '0-0', 'n/1'],
        [b.id, a.id, 'n/2'],
      ]),
    )
    expect(Buffer.from(bells[0]!.update!)).toEqual(Buffer.from(first))
    // One task, token the first entry, on the shard's stream (another master than the document).
    expect(await queued(keys, doc)).toEqual([a.id])
    expect(await redis.hget(keys.meta(doc), 'task')).toBe(a.id)
    const tail = await streams.readTail(doc, '0-0')
    expect(tail.entries.map((e) => e.id)).toEqual([a.id, b.id])

    // A worker reading the queue shard by shard gets it.
    const queue = createTaskQueue({ redis, blocking: redis, keys, shards: SHARDS })
    await queue.ensureGroups()
    const tasks = await queue.read('w1', 10, 100)
    expect(tasks.map((t) => [t.doc, t.token, t.shard])).toEqual([[doc, a.id, shardOf(doc, SHARDS)]])
  })

  it('delivers the tasks of documents spread over every shard (per-shard reads)', async () => {
    const keys = createKeys(uniquePrefix('cl-read'))
    const streams = createDocStreams({ redis, keys, queueShards: SHARDS })
    const docs = Array.from({ length: 24 }, (_, i) => `spread-${i}`)
    for (const d of docs) await streams.append(d, update(d), 'n/1')
    expect(new Set(docs.map((d) => shardOf(d, SHARDS))).size).toBe(SHARDS)
    const queue = createTaskQueue({ redis, blocking: redis, keys, shards: SHARDS })
    await queue.ensureGroups()
    const delivered = new Map<string, string>()
    await vi.waitFor(
      async () => {
        for (const t of await queue.read('w1', 8, 50)) delivered.set(t.doc, t.token)
        expect(delivered.size).toBe(docs.length)
      },
      { timeout: 10_000, interval: 10 },
    )
    for (const d of docs) expect(delivered.get(d)).toBe(await queue.liveToken(d))
    expect((await queue.depth()).pending).toBe(docs.length)
  })
})

describe('crash points between the two slots', () => {
  it('reconcile enqueues exactly the marks a crash left unqueued; one of two concurrent reconcilers runs', async () => {
    const keys = createKeys(uniquePrefix('cl-reconcile'))
    const streams = createDocStreams({ redis, keys, queueShards: SHARDS })
    const queue = createTaskQueue({ redis, blocking: redis, keys, shards: SHARDS })
    await queue.ensureGroups()

    // (a) The node died after append-2.lua marked the task, before its XADD to the queue.
    const markOnly = async (doc: string): Promise<string> => {
      const reply = (await scripts.appendInSlot.run(
        redis,
        [keys.stream(doc), keys.meta(doc)],
        [update(doc), 'n/1', keys.channel(doc), 65536, doc, '0-0', '1', 0],
      )) as Buffer[]
      expect(Number(reply[2])).toBe(1)
      return String(reply[0])
    }
    const crashedAppend = await markOnly('crashed-append')
    // (b) A restore died after restore-tail-2.lua, before its XADD (entries keep old ids).
    const oldId = `${Date.now() - 60_000}-0`
    const [added, , , newTask, highest] = (await scripts.restoreTailInSlot.run(
      redis,
      [keys.stream('crashed-restore'), keys.meta('crashed-restore')],
      ['crashed-restore', '0-0', '0-0', 'restore/1', oldId, update('r')],
    )) as [number, number, number, number, Buffer]
    expect([added, newTask, highest.toString()]).toEqual([1, 1, oldId])
    // Tasks that are where they belong: queued, delivered and pending, waiting in the delayed set.
    const onQueue = (await streams.append('queued', update('q'), 'n/1'))!.id
    const delivered = (await streams.append('delivered', update('d'), 'n/1'))!.id
    const delayed = (await streams.append('delayed', update('l'), 'n/1'))!.id
    const read: string[] = []
    await vi.waitFor(async () => {
      for (const t of await queue.read('w1', 10, 50)) {
        read.push(t.doc)
        if (t.doc === 'delayed') expect(await queue.settle(t, 60_000)).toBe(true)
      }
      expect(read.sort()).toEqual(['delayed', 'delivered', 'queued'])
    })
    expect((await queue.depth()).delayed).toBe(1)

    // Past the grace period, a fresh mark (an append that may still be enqueuing) is left alone.
    await vi.waitFor(
      async () => expect((await queue.now()) - idTimeMs(crashedAppend)).toBeGreaterThan(GRACE_MS),
      { timeout: 5000, interval: 50 },
    )
    const young = await markOnly('young')

    const other = await connect()
    const otherQueue = createTaskQueue({ redis: other, blocking: other, keys, shards: SHARDS })
    const counts = await Promise.all([queue.reconcile(GRACE_MS), otherQueue.reconcile(GRACE_MS)])
    expect(counts.sort()).toEqual([0, 2])
    expect(await queued(keys, 'crashed-append')).toEqual([crashedAppend])
    expect(await queued(keys, 'crashed-restore')).toEqual([oldId])
    expect(await queued(keys, 'queued')).toEqual([onQueue])
    expect(await queued(keys, 'delivered')).toEqual([delivered])
    expect(await queued(keys, 'delayed')).toEqual([])
    expect(await queued(keys, 'young')).toEqual([])
    expect(await redis.zrange(keys.delayed(shardOf('delayed', SHARDS)), 0, -1)).toEqual([
      `${delayed} delayed`,
    ])

    // Once the lock expired, the next pass finds only the mark that has aged meanwhile.
    await vi.waitFor(async () => expect(await redis.exists(keys.reconciler)).toBe(0), {
      timeout: 5000,
      interval: 100,
    })
    expect(await queue.reconcile(GRACE_MS)).toBe(1)
    expect(await queued(keys, 'young')).toEqual([young])

    // The repaired tasks reach a worker with the live token.
    const repaired = new Map<string, string>()
    await vi.waitFor(async () => {
      for (const t of await queue.read('w2', 10, 50)) repaired.set(t.doc, t.token)
      expect([...repaired.keys()].sort()).toEqual(['crashed-append', 'crashed-restore', 'young'])
    })
    for (const [doc, token] of repaired) expect(await queue.liveToken(doc)).toBe(token)
  })

  it('restoreTail on a cluster queues the task of a restored document', async () => {
    const keys = createKeys(uniquePrefix('cl-restore'))
    const doc = docAcrossMasters(keys, 'restored')
    const ids = [`${Date.now() - 5000}-0`, `${Date.now() - 4000}-0`]
    const result = await restoreTail(redis, keys, doc, {
      above: '0-0',
      reached: ids[1]!,
      entries: ids.map((id, i) => ({ id, update: update(String(i)) })),
      origin: 'restore/1',
      queueShards: SHARDS,
    })
    expect(result).toEqual({ added: 2, present: 0, rebuilt: false, newTask: true })
    expect(await queued(keys, doc)).toEqual([ids[1]])
  })
})

describe('WAIT for replicas', () => {
  /** A connection of its own to `node` (the cluster client's is busy while it WAITs). */
  const direct = async (node: Standalone): Promise<Standalone> => {
    const conn = new Standalone({
      host: node.options.host!,
      port: node.options.port!,
      lazyConnect: true,
    })
    conn.on('error', () => {})
    await conn.connect()
    return conn
  }
  const blockedClients = async (conn: Standalone) =>
    Number(/blocked_clients:(\d+)/.exec(await conn.info('clients'))?.[1])
  /** Streams that WAIT for one replica, their appends on a connection of their own. */
  const waitingStreams = (keys: Keys, waitTimeoutMs: number) => {
    const writer = redis.duplicate()
    const streams = createDocStreams({
      redis,
      keys,
      queueShards: SHARDS,
      waitReplicas: 1,
      waitTimeoutMs,
      writer,
    })
    return { streams, writer }
  }

  it('resolves an append only once a replica has it; the doorbell rings after', async () => {
    const keys = createKeys(uniquePrefix('cl-wait'))
    const doc = 'waited'
    const streams = createDocStreams({
      redis,
      keys,
      queueShards: SHARDS,
      waitReplicas: 1,
      waitTimeoutMs: 4000,
    })
    const bells = await listen(keys, doc)
    const replica = await replicaOf(keys.stream(doc))
    const master = await direct(masterFor(redis, keys.stream(doc)))
    try {
      // Warm: the document's clock map is seeded, so the next append is one script and one WAIT.
      const first = (await streams.append(doc, update('first'), 'n/1'))!
      expect(await replica.xlen(keys.stream(doc))).toBe(1)
      await vi.waitFor(() => expect(bells.map((b) => b.id)).toEqual([first.id]))

      // The replica stops applying the replication stream for a while (CLIENT PAUSE ALL covers
      // it; in Redis 7.0 even CLIENT UNPAUSE waits, so the pause simply runs out).
      await replica.call('CLIENT', 'PAUSE', '1500', 'ALL')
      let settled = false
      const appending = streams.append(doc, update('second'), 'n/1').finally(() => {
        settled = true
      })
      // The master has the entry and the append is blocked in WAIT...
      await vi.waitFor(async () => {
        expect(await master.xlen(keys.stream(doc))).toBe(2)
        expect(await blockedClients(master)).toBe(1)
      })
      // ... so nobody was told: no doorbell, no answer.
      expect(settled).toBe(false)
      expect(bells).toHaveLength(1)
      const masterOffset = Number(
        /master_repl_offset:(\d+)/.exec(await master.info('replication'))?.[1],
      )
      const second = (await appending)!
      // Resolved: the replica has the entry and has applied the master's offset of that moment.
      expect((await replica.xrange(keys.stream(doc), second.id, second.id)).length).toBe(1)
      const replicaOffset = Number(
        /slave_repl_offset:(\d+)/.exec(await replica.info('replication'))?.[1],
      )
      expect(replicaOffset).toBeGreaterThanOrEqual(masterOffset)
      await vi.waitFor(() => expect(bells.map((b) => b.id)).toEqual([first.id, second.id]))
      expect(bells[1]?.prev).toBe(first.id)
    } finally {
      replica.disconnect()
      master.disconnect()
    }
  })

  it('fails with REDIS_UNAVAILABLE and rings no doorbell when fewer replicas confirm', async () => {
    const keys = createKeys(uniquePrefix('cl-wait2'))
    const doc = 'impossible'
    const waiting = createDocStreams({
      redis,
      keys,
      queueShards: SHARDS,
      waitReplicas: 2,
      waitTimeoutMs: 300,
    })
    const bells = await listen(keys, doc)
    const err = await waiting.append(doc, update('x'), 'n/1').catch((e: unknown) => e)
    expect(isAppError(err, 'REDIS_UNAVAILABLE')).toBe(true)
    expect((err as Error).message).toMatch(/1 of 2 replicas confirmed/)
    // A later append on the same channel rings; had the failed one rung, it would come first.
    const plain = createDocStreams({ redis, keys, queueShards: SHARDS })
    const later = (await plain.append(doc, update('y'), 'n/2'))!
    await vi.waitFor(() => expect(bells.map((b) => b.id)).toEqual([later.id]))
  })

  it('an entry no replica confirmed is read by nobody until one does; a resend or a confirm makes it visible', async () => {
    const keys = createKeys(uniquePrefix('cl-wait4'))
    const doc = 'unseen'
    const { streams, writer } = waitingStreams(keys, 300)
    const bells = await listen(keys, doc)
    const first = (await streams.append(doc, update('first'), 'n/1'))!
    const replica = await replicaOf(keys.stream(doc))
    const master = await direct(masterFor(redis, keys.stream(doc)))
    try {
      await replica.call('CLIENT', 'PAUSE', '3000', 'ALL')
      const second = update('second')
      const failed = await streams.append(doc, second, 'n/1').catch((e: unknown) => e)
      expect(isAppError(failed, 'REDIS_UNAVAILABLE')).toBe(true)
      // The master holds the entry, but a join, a gap fill or a compaction does not read it.
      expect(await master.xlen(keys.stream(doc))).toBe(2)
      const unseen = await streams.readTail(doc, '0-0')
      expect(unseen.entries.map((e) => e.id)).toEqual([first.id])
      expect(unseen.last).toBe(first.id)
      expect(unseen.pending).toBe(true)
      // Its writer resends it (y-websocket does after the 4503 close): not acknowledged either
      // while the replica still lags.
      const again = await streams.append(doc, second, 'n/1').catch((e: unknown) => e)
      expect(isAppError(again, 'REDIS_UNAVAILABLE')).toBe(true)
      expect((await streams.readTail(doc, '0-0')).entries).toHaveLength(1)
      expect(bells.map((b) => b.id)).toEqual([first.id])

      // Once the replica is back, the resend is acknowledged and the entry is seen by everyone,
      // with a doorbell for the nodes that deliver it live.
      await vi.waitFor(async () => expect(await streams.append(doc, second, 'n/1')).toBeNull(), {
        timeout: 15_000,
        interval: 200,
      })
      const seen = await streams.readTail(doc, '0-0')
      expect(seen.entries).toHaveLength(2)
      expect(seen.pending).toBe(false)
      const secondId = seen.entries[1]!.id
      expect(seen.last).toBe(secondId)
      await vi.waitFor(() => expect(bells.map((b) => b.id)).toEqual([first.id, secondId]))

      // The same for an entry whose writer never comes back: a worker's confirm covers it.
      await replica.call('CLIENT', 'PAUSE', '1000', 'ALL')
      const orphanErr = await streams.append(doc, update('orphan'), 'n/2').catch((e: unknown) => e)
      expect(isAppError(orphanErr, 'REDIS_UNAVAILABLE')).toBe(true)
      expect((await streams.readTail(doc, secondId)).entries).toEqual([])
      await vi.waitFor(async () => expect(await streams.confirm(doc)).toBe(true), {
        timeout: 15_000,
        interval: 200,
      })
      const orphan = await streams.readTail(doc, secondId)
      expect(orphan.entries).toHaveLength(1)
      expect(orphan.pending).toBe(false)
      await vi.waitFor(() => expect(bells.at(-1)?.id).toBe(orphan.entries[0]!.id))
    } finally {
      replica.disconnect()
      master.disconnect()
      writer.disconnect()
    }
  })

  it('a WAIT held up by a slow replica holds up no read of another document on that master', async () => {
    const keys = createKeys(uniquePrefix('cl-wait3'))
    const slow = 'slow'
    const master = masterFor(redis, keys.stream(slow))
    let other = 'other-0'
    for (let i = 1; masterFor(redis, keys.stream(other)) !== master; i++) other = `other-${i}`
    const { streams, writer } = waitingStreams(keys, 4000)
    await streams.append(slow, update('a'), 'n/1')
    const written = (await streams.append(other, update('b'), 'n/1'))!
    const replica = await replicaOf(keys.stream(slow))
    const watcher = await direct(master)
    try {
      await replica.call('CLIENT', 'PAUSE', '2000', 'ALL')
      const pausedAt = performance.now()
      const appending = streams.append(slow, update('c'), 'n/1')
      await vi.waitFor(async () => expect(await blockedClients(watcher)).toBe(1))
      // A join or a gap fill of another document served by the same master.
      const tail = await streams.readTail(other, '0-0')
      const readAt = performance.now()
      expect(tail.entries.map((e) => e.id)).toEqual([written.id])
      await appending
      // The read came back while the replica was still paused, not after the WAIT.
      expect(readAt - pausedAt).toBeLessThan(1000)
    } finally {
      replica.disconnect()
      watcher.disconnect()
      writer.disconnect()
    }
  })
})
