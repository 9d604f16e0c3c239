import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { Registry } from 'prom-client'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { type ErrorCode, describeError } from '@streambed/common'
import { type DocStorage, createFsStorage } from '@streambed/storage'
import { type DocStreams, createDocStreams, createKeys } from '@streambed/streams'
import { mergeAll } from '@streambed/protocol'
import { captureUpdate, uniquePrefix, useRedisServer } from '@streambed/testing'
import { createNodeMetrics, type NodeMetrics } from './metrics.js'
import { Sync } from './sync.js'
import { createSyncPool, type SyncPool } from './sync-pool.js'
import { fakeConnection } from './testing/fake-socket.js'

const fx = useRedisServer()
const insert = (text: string) => captureUpdate((d) => d.getText('t').insert(0, text))
const emptySv = Y.encodeStateVector(new Y.Doc())

describe('Sync', () => {
  let dir: string
  let storage: DocStorage
  let streams: DocStreams
  let metrics: NodeMetrics
  let pool: SyncPool
  let sync: Sync
  let rejected: ErrorCode[]
  let ids = 1
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'streambed-sync-'))
    storage = await createFsStorage({ dir })
    streams = createDocStreams({
      redis: fx.admin,
      keys: createKeys(uniquePrefix('sync')),
      queueShards: 1,
      storage,
    })
    metrics = createNodeMetrics(new Registry())
    pool = createSyncPool({ threads: 0, threadAboveBytes: 0, idleMs: 0 })
    rejected = []
    sync = new Sync({
      storage,
      streams,
      pool,
      metrics,
      baselineKeepMs: 60_000,
      subscribed: () => Promise.resolve(),
      delivered: () => '0-0',
      reject: (_conn, err) => rejected.push(describeError(err).code),
    })
  })
  afterEach(async () => {
    await pool.close()
    await rm(dir, { recursive: true, force: true })
  })

  const connect = () => fakeConnection({ id: ids++ })
  const reads = async () => (await metrics.syncReads.get()).values[0]?.value ?? 0
  const textOf = (update: Uint8Array | undefined) => {
    const doc = new Y.Doc()
    if (update) Y.applyUpdate(doc, update)
    return doc.getText('t').toString()
  }

  it('answers with our step 1 and the document from storage + stream, then goes live', async () => {
    const { id } = (await streams.append('d', insert('tail '), 'x/1'))!
    const { conn, socket } = connect()
    sync.request(conn, emptySv)
    await vi.waitFor(() => expect(conn.state).toBe('live'))
    const [step1, step2] = socket.messages()
    expect(step1?.kind).toBe('sync-step1')
    expect(step2?.kind).toBe('sync-step2')
    expect(textOf(socket.updates()[0])).toBe('tail ')
    expect(conn.syncedUpTo).toBe(id)
  })

  it('REDIS_WAIT_REPLICAS: a join holds every entry this node delivered, though a failover took back their mark', async () => {
    const keys = createKeys(uniquePrefix('sync-wait'))
    const plain = createDocStreams({ redis: fx.admin, keys, queueShards: 1, storage })
    const first = (await plain.append('d', insert('a'), 'x/1'))!
    await plain.append('d', insert('b'), 'x/1')
    const third = (await plain.append('d', insert('c'), 'x/1'))!
    // The node delivered all three after their WAIT; the new master's meta says only the first.
    await fx.admin.hset(keys.meta('d'), 'visible', first.id)
    const waiting = createDocStreams({
      redis: fx.admin,
      keys,
      queueShards: 1,
      storage,
      waitReplicas: 1,
    })
    expect((await waiting.readTail('d', '0-0')).entries).toHaveLength(1)
    expect(await waiting.lastVisible('d')).toBe(first.id)
    const joining = new Sync({
      storage,
      streams: waiting,
      pool,
      metrics,
      baselineKeepMs: 60_000,
      subscribed: () => Promise.resolve(),
      delivered: () => third.id,
      reject: (_conn, err) => rejected.push(describeError(err).code),
    })
    const { conn, socket } = connect()
    joining.request(conn, emptySv)
    await vi.waitFor(() => expect(conn.state).toBe('live'))
    // Live deliveries start after `third`: the answer holds everything up to it.
    expect(conn.syncedUpTo).toBe(third.id)
    expect(textOf(socket.updates()[0])).toHaveLength(3)
    expect(await waiting.lastVisible('d')).toBe(third.id)
  })

  it('shares one read among the step 1s of a document that arrive together', async () => {
    await streams.append('d', insert('shared'), 'x/1')
    const clients = [connect(), connect(), connect()]
    for (const { conn } of clients) sync.request(conn, emptySv)
    await vi.waitFor(() => expect(clients.every(({ conn }) => conn.state === 'live')).toBe(true))
    expect(await reads()).toBe(1)
    // One encoded answer, shared by the three sockets.
    const answers = clients.map(({ socket }) => socket.sent[1])
    expect(answers[0]).toBe(answers[1])
    expect(answers[1]).toBe(answers[2])
  })

  it('coalesces step 1s of one connection sent while its sync runs', async () => {
    await streams.append('d', insert('x'), 'x/1')
    const { conn, socket } = connect()
    for (let i = 0; i < 20; i++) sync.request(conn, emptySv)
    await vi.waitFor(() => expect(socket.messages()).toHaveLength(4))
    await new Promise((r) => setTimeout(r, 50))
    // The first, and the newest of those that arrived meanwhile.
    expect(await reads()).toBe(2)
    expect(socket.messages()).toHaveLength(4)
  })

  it('keeps a baseline for a client with content, and none for an empty client', async () => {
    await streams.append('d', insert('base'), 'x/1')
    const empty = connect()
    sync.request(empty.conn, emptySv)
    const withContent = connect()
    const doc = new Y.Doc()
    Y.applyUpdate(doc, insert('other'))
    sync.request(withContent.conn, Y.encodeStateVector(doc))
    await vi.waitFor(() => expect(withContent.conn.state).toBe('live'))
    await vi.waitFor(() => expect(empty.conn.state).toBe('live'))
    expect(empty.conn.takeBaseline()).toBeNull()
    expect(withContent.conn.takeBaseline()).not.toBeNull()
  })

  it('answers a join of a typing tail with about the bytes of the document, stored part or not', async () => {
    // 2 000 one-character edits with typos fixed as they go, the first 500 compacted into storage.
    const writer = new Y.Doc()
    const updates: Uint8Array[] = []
    writer.on('update', (u: Uint8Array) => updates.push(u))
    const text = writer.getText('t')
    for (let i = 0; i < 2000; i++) {
      if (i % 40 === 39) text.delete(text.length - 2, 2)
      else text.insert(text.length, 'the quick brown fox '[i % 20] as string)
    }
    const compacted = new Y.Doc()
    for (const u of updates.slice(0, 500)) Y.applyUpdate(compacted, u)
    await storage.compareAndSet('typed', null, {
      state: Y.encodeStateAsUpdate(compacted),
      watermark: '1-0',
    })
    for (const u of updates.slice(500)) await streams.append('typed', u, 'x/1')
    const { conn, socket } = fakeConnection({ id: ids++, doc: 'typed' })
    sync.request(conn, emptySv)
    await vi.waitFor(() => expect(conn.state).toBe('live'))
    const answer = socket.updates()[0] as Uint8Array
    expect(textOf(answer)).toBe(text.toString())
    const state = Y.encodeStateAsUpdate(writer)
    expect(answer.length).toBeLessThanOrEqual(1.2 * state.length)
    // Without the compaction the answer holds every edit as an item of its own.
    expect(
      mergeAll([Y.encodeStateAsUpdate(compacted), ...updates.slice(500)]).length,
    ).toBeGreaterThan(3 * state.length)
  })

  it('rejects BAD_MESSAGE on a state vector that does not decode', async () => {
    const { conn, socket } = connect()
    sync.request(conn, new Uint8Array([5, 200]))
    await vi.waitFor(() => expect(rejected).toEqual(['BAD_MESSAGE']))
    expect(socket.sent).toHaveLength(0)
  })
})
