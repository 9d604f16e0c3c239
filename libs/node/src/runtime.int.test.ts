import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { Redis } from 'ioredis'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { CloseCode, silentLogger } from '@streambed/common'
import {
  encodeAwarenessMessage,
  encodeAwarenessUpdate,
  encodeQueryAwareness,
  encodeSyncStep1,
  encodeSyncStep2,
  encodeSyncUpdate,
} from '@streambed/protocol'
import { createFsStorage } from '@streambed/storage'
import { ZERO_ID, createAwarenessStore, createDocStreams, createKeys } from '@streambed/streams'
import { captureUpdate, uniquePrefix, useRedisServer } from '@streambed/testing'
import { createNodeMetrics } from './metrics.js'
import { NodeRuntime, type RuntimeLimits } from './runtime.js'
import { FakeSocket } from './testing/fake-socket.js'

const fx = useRedisServer()
const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})

const start = async (limits: Partial<RuntimeLimits> = {}) => {
  const keys = createKeys(uniquePrefix('rt'))
  const subscriber = new Redis(fx.url, { lazyConnect: true })
  await subscriber.connect()
  const dir = await mkdtemp(join(tmpdir(), 'streambed-rt-'))
  const streams = createDocStreams({ redis: fx.admin, keys, queueShards: 1 })
  const runtime = new NodeRuntime({
    nodeId: 'n',
    redis: fx.admin,
    subscriber,
    keys,
    streams,
    awareness: createAwarenessStore({ redis: fx.admin, keys }),
    storage: await createFsStorage({ dir }),
    logger: silentLogger(),
    metrics: createNodeMetrics(new Registry()),
    limits: { syncThreads: 0, docLingerMs: 50, ...limits },
  })
  await runtime.start()
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await runtime.close()
    subscriber.disconnect()
    await rm(dir, { recursive: true, force: true })
  }
  cleanups.push(close)
  /** A socket opened on `doc`; its end runs the runtime's close handling, as uWS does. */
  const open = (doc = 'd') => {
    const socket = new FakeSocket()
    const conn = runtime.open(socket, doc, {
      access: 'write',
      mayDelete: false,
      subject: undefined,
    })
    socket.onEnd = () => runtime.closed(conn)
    return { conn, socket }
  }
  const entries = async (doc = 'd') => (await streams.readTail(doc, ZERO_ID)).entries
  return { runtime, open, entries, close, keys }
}

const insert = (text: string) => captureUpdate((d) => d.getText('t').insert(0, text))
const emptySv = Y.encodeStateVector(new Y.Doc())

describe('NodeRuntime', () => {
  it('closes with 4400 on a frame that does not decode, and appends nothing', async () => {
    const { runtime, open, entries } = await start()
    const { conn, socket } = open()
    runtime.message(conn, new Uint8Array([0, 2, 3, 1, 2]))
    expect(socket.ended?.code).toBe(CloseCode.badMessage)
    expect(conn.closed).toBe(true)
    expect(await entries()).toHaveLength(0)
    expect(runtime.connectionCount).toBe(0)
  })

  it('closes with 4400 on an awareness update that is not JSON', async () => {
    const { runtime, open } = await start()
    const { conn, socket } = open()
    const bad = encodeAwarenessUpdate([{ clientId: 1, clock: 1, state: '{nope' }])
    runtime.message(conn, encodeAwarenessMessage(bad))
    expect(socket.ended?.code).toBe(CloseCode.badMessage)
  })

  it('closes with 4529 when updates queue past the limit, dropping the queue', async () => {
    const { runtime, open, entries } = await start({ maxInFlightUpdates: 1, maxQueuedBytes: 64 })
    const { conn, socket } = open()
    runtime.message(conn, encodeSyncUpdate(insert('in flight')))
    runtime.message(conn, encodeSyncUpdate(insert('q'.repeat(100))))
    expect(socket.ended?.code).toBe(CloseCode.tooManyInFlight)
    await vi.waitFor(async () => expect(await entries()).toHaveLength(1))
    await new Promise((r) => setTimeout(r, 50))
    // The client resends the dropped update on reconnect (its step 2); it is not appended here.
    expect(await entries()).toHaveLength(1)
  })

  it('answers a step 1, then does not append a step 2 that adds nothing', async () => {
    const { runtime, open, entries } = await start()
    const shared = insert('shared')
    const writer = open()
    runtime.message(writer.conn, encodeSyncUpdate(shared))
    await vi.waitFor(async () => expect(await entries()).toHaveLength(1))
    // A client that already has the document reconnects.
    const client = new Y.Doc()
    Y.applyUpdate(client, shared)
    const { conn, socket } = open()
    runtime.message(conn, encodeSyncStep1(Y.encodeStateVector(client)))
    await vi.waitFor(() => expect(conn.state).toBe('live'))
    expect(socket.messages().map((m) => m.kind)).toContain('sync-step2')
    runtime.message(conn, encodeSyncStep2(Y.encodeStateAsUpdate(client)))
    await new Promise((r) => setTimeout(r, 50))
    expect(await entries()).toHaveLength(1)
  })

  it('delivers one socket updates to another, not back to the sender', async () => {
    const { runtime, open } = await start()
    const a = open()
    const b = open()
    for (const { conn } of [a, b]) runtime.message(conn, encodeSyncStep1(emptySv))
    await vi.waitFor(() => expect(b.conn.state).toBe('live'))
    await vi.waitFor(() => expect(a.conn.state).toBe('live'))
    const before = a.socket.sent.length
    runtime.message(a.conn, encodeSyncUpdate(insert('hi')))
    await vi.waitFor(() =>
      expect(b.socket.messages().filter((m) => m.kind === 'sync-update')).toHaveLength(1),
    )
    expect(a.socket.sent.slice(before).length).toBe(0)
  })

  it('answers query-awareness with the states set on the document', async () => {
    const { runtime, open, keys } = await start()
    const a = open()
    const state = encodeAwarenessUpdate([{ clientId: 42, clock: 1, state: '{"name":"a"}' }])
    runtime.message(a.conn, encodeAwarenessMessage(state))
    await vi.waitFor(async () => expect(await fx.admin.hlen(keys.awareness('d'))).toBe(1))
    const b = open()
    b.socket.sent.length = 0
    runtime.message(b.conn, encodeQueryAwareness())
    await vi.waitFor(() =>
      expect(b.socket.messages()).toContainEqual({ kind: 'awareness', update: state }),
    )
  })

  it('drains: spreads the 1001 closes over the drain time, and refuses new sockets meanwhile', async () => {
    const { runtime, open, close } = await start()
    const sockets = Array.from({ length: 4 }, () => open().socket)
    const closedAt: number[] = []
    for (const socket of sockets) {
      const end = socket.end.bind(socket)
      socket.end = (code, reason) => {
        closedAt.push(performance.now())
        end(code, reason)
      }
    }
    const closing = runtime.close(600)
    const late = new FakeSocket()
    runtime.open(late, 'd', { access: 'write', mayDelete: false, subject: undefined })
    expect(late.ended?.code).toBe(CloseCode.goingAway)
    await closing
    expect(sockets.every((s) => s.ended?.code === CloseCode.goingAway)).toBe(true)
    // Four closes 150 ms apart: the last at least 450 ms after the first (timers only run late).
    expect(closedAt[3]! - closedAt[0]!).toBeGreaterThanOrEqual(440)
    await close()
  })

  it('closes every socket with 1001 on close, after the appends in flight', async () => {
    const { runtime, open, entries, close } = await start()
    const { conn, socket } = open()
    runtime.message(conn, encodeSyncUpdate(insert('last words')))
    await close()
    expect(socket.ended?.code).toBe(CloseCode.goingAway)
    expect(await entries()).toHaveLength(1)
    const late = new FakeSocket()
    runtime.open(late, 'd', { access: 'write', mayDelete: false, subject: undefined })
    expect(late.ended?.code).toBe(CloseCode.goingAway)
  })
})
