import { Redis } from 'ioredis'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { CloseCode, nextId, silentLogger } from '@streambed/common'
import { encodeAwarenessUpdate } from '@streambed/protocol'
import { type Keys, createDocStreams, createKeys } from '@streambed/streams'
import { captureUpdate, uniquePrefix, useRedisServer } from '@streambed/testing'
import { FanOut } from './fan-out.js'
import { createNodeMetrics } from './metrics.js'
import { fakeConnection } from './testing/fake-socket.js'

const fx = useRedisServer()
const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})

const setup = async () => {
  const keys = createKeys(uniquePrefix('fan'))
  // Connected before subscribing: ioredis' ready check would fail on a subscribed connection.
  const subscriber = new Redis(fx.url, { lazyConnect: true })
  await subscriber.connect()
  const streams = createDocStreams({ redis: fx.admin, keys, queueShards: 1 })
  const metrics = createNodeMetrics(new Registry())
  const fanOut = new FanOut({
    redis: fx.admin,
    subscriber,
    keys,
    streams,
    logger: silentLogger(),
    metrics,
    lingerMs: 50,
    retryMs: 20,
  })
  await fanOut.start()
  cleanups.push(async () => {
    await fanOut.close()
    subscriber.disconnect()
  })
  let ids = 1
  /** A live connection on `doc`, subscribed. */
  const connect = async (doc = 'd') => {
    const { conn, socket } = fakeConnection({ id: ids++, doc })
    socket.onEnd = () => {
      conn.markClosed()
      fanOut.leave(conn)
    }
    await fanOut.join(conn)
    conn.beginJoin()
    conn.synced(fanOut.lastId(doc))
    return { conn, socket }
  }
  const gapFills = async () => (await metrics.gapFills.get()).values[0]?.value ?? 0
  return { keys, streams, fanOut, connect, gapFills }
}

/** Real updates, one per mark, so that each can be told apart where it is delivered. */
const marks = Array.from({ length: 8 }, (_, i) => captureUpdate((d) => d.getMap('m').set('k', i)))

/** Adds an entry to the stream the way append-3.lua does, but without ringing the doorbell. */
const appendSilently = async (keys: Keys, doc: string, update: Uint8Array) => {
  const id = (await fx.admin.xadd(keys.stream(doc), '*', 'u', Buffer.from(update), 'o', 'x/1'))!
  await fx.admin.hset(keys.meta(doc), 'last', id)
  return id
}

describe('FanOut', () => {
  it('delivers each doorbell in order, skipping the sender', async () => {
    const { streams, connect } = await setup()
    const a = await connect()
    const b = await connect()
    for (let i = 0; i < 5; i++) await streams.append('d', marks[i]!, a.conn.origin)
    await vi.waitFor(() => expect(b.socket.updates()).toHaveLength(5))
    expect(b.socket.updates()).toEqual(marks.slice(0, 5))
    expect(a.socket.updates()).toHaveLength(0)
  })

  it('fills a gap with one read when a doorbell does not follow the last delivered entry', async () => {
    const { keys, streams, connect, gapFills } = await setup()
    const { socket } = await connect()
    await appendSilently(keys, 'd', marks[1]!)
    await appendSilently(keys, 'd', marks[2]!)
    await streams.append('d', marks[3]!, 'x/2')
    await vi.waitFor(() => expect(socket.updates()).toHaveLength(3))
    expect(socket.updates()).toEqual(marks.slice(1, 4))
    expect(await gapFills()).toBe(1)
  })

  it('closes with 4509 when entries it never delivered were trimmed', async () => {
    const { keys, streams, connect } = await setup()
    await streams.append('d', marks[0]!, 'x/0')
    const a = await connect()
    const b = await connect()
    await appendSilently(keys, 'd', marks[1]!)
    const second = await appendSilently(keys, 'd', marks[2]!)
    // A worker compacted both and trimmed them before this node read them.
    await fx.admin.xtrim(keys.stream('d'), 'MINID', nextId(second))
    await fx.admin.hset(keys.meta('d'), 'trimmed', nextId(second))
    await streams.append('d', marks[3]!, 'x/2')
    await vi.waitFor(() => expect(a.socket.ended?.code).toBe(CloseCode.resync))
    expect(b.socket.ended?.code).toBe(CloseCode.resync)
  })

  it('closes every connection with 4509 when Redis lost its data (epoch changed)', async () => {
    const { keys, fanOut, connect } = await setup()
    const a = await connect('d1')
    const b = await connect('d2')
    await fx.admin.del(keys.epoch)
    await fanOut.checkEpoch()
    expect(a.socket.ended?.code).toBe(CloseCode.resync)
    expect(b.socket.ended?.code).toBe(CloseCode.resync)
  })

  it('keeps connections when the epoch is unchanged', async () => {
    const { fanOut, connect } = await setup()
    const a = await connect()
    await fanOut.checkEpoch()
    expect(a.socket.ended).toBeNull()
  })

  it('catches up on entries whose doorbells were missed', async () => {
    const { keys, fanOut, connect } = await setup()
    const { socket } = await connect()
    await appendSilently(keys, 'd', marks[7]!)
    fanOut.catchUpAll()
    await vi.waitFor(() => expect(socket.updates()).toEqual([marks[7]]))
  })

  it('delivers doorbells that arrive during a catch-up after it, in order and once', async () => {
    const { keys, streams, fanOut, connect } = await setup()
    const { socket } = await connect()
    await appendSilently(keys, 'd', marks[1]!)
    fanOut.catchUpAll()
    await streams.append('d', marks[2]!, 'x/2')
    await streams.append('d', marks[3]!, 'x/2')
    await vi.waitFor(() => expect(socket.updates()).toHaveLength(3))
    expect(socket.updates()).toEqual(marks.slice(1, 4))
  })

  it('relays awareness from the channel to every connection of the document', async () => {
    const { keys, connect } = await setup()
    const a = await connect()
    const other = await connect('elsewhere')
    const update = encodeAwarenessUpdate([{ clientId: 9, clock: 1, state: '{"x":1}' }])
    const message = Buffer.concat([Buffer.from('a n~t/1\n'), update])
    await fx.admin.spublish(keys.channel('d'), message)
    await vi.waitFor(() =>
      expect(a.socket.messages()).toContainEqual({ kind: 'awareness', update }),
    )
    expect(other.socket.messages()).toHaveLength(0)
  })

  it('unsubscribes a document its last connection left, after the linger time', async () => {
    const { keys, fanOut, connect } = await setup()
    const { conn } = await connect()
    expect(fanOut.docNames()).toEqual(['d'])
    fanOut.leave(conn)
    await vi.waitFor(() => expect(fanOut.docNames()).toEqual([]))
    const subscribers = (await fx.admin.call('PUBSUB', 'SHARDNUMSUB', keys.channel('d'))) as [
      string,
      number,
    ]
    await vi.waitFor(async () => {
      const [, n] = (await fx.admin.call('PUBSUB', 'SHARDNUMSUB', keys.channel('d'))) as [
        string,
        number,
      ]
      expect(n).toBe(0)
    })
    expect(subscribers[0]).toBe(keys.channel('d'))
  })
})
