import { Redis } from 'ioredis'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  decodeAwarenessUpdate,
  encodeAwarenessUpdate,
  type AwarenessEntry,
} from '@streambed/protocol'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { createAwarenessStore } from './awareness-store.js'
import { decodeChannelMessage, type ChannelMessage } from './channel.js'
import { createKeys } from './keys.js'

const fx = useRedisServer()

const subscribers: Redis[] = []
afterEach(() => {
  for (const s of subscribers.splice(0)) s.disconnect()
})

const setup = async (doc: string) => {
  const keys = createKeys(uniquePrefix('aw'))
  const store = createAwarenessStore({ redis: fx.admin, keys })
  const relayed: ChannelMessage[] = []
  // Connected before subscribing: ioredis' ready check fails on a connection already subscribed.
  const sub = new Redis(fx.url, { lazyConnect: true })
  await sub.connect()
  subscribers.push(sub)
  sub.on('smessageBuffer', (_channel: Buffer, message: Buffer) => {
    const decoded = decodeChannelMessage(message)
    if (decoded) relayed.push(decoded)
  })
  await sub.ssubscribe(keys.channel(doc))
  return { keys, store, relayed }
}

const relayOf = (origin: string, entries: AwarenessEntry[]): ChannelMessage => ({
  kind: 'awareness',
  origin,
  update: Buffer.from(encodeAwarenessUpdate(entries)),
})

// Client ids, clocks and state lengths above 127 take more than one varuint byte.
const big = { clientId: 300, clock: 200, state: JSON.stringify({ name: 'x'.repeat(200) }) }

describe('awareness store', () => {
  it('stores and relays news, drops echoes, and takes removals only from the owner', async () => {
    const { store, relayed } = await setup('d')
    const a = 'nA~t1/1'
    const b = 'nB~t2/7'

    expect(await store.publish('d', a, [big, { clientId: 5, clock: 1, state: '{}' }])).toEqual([
      big,
      { clientId: 5, clock: 1, state: '{}' },
    ])
    // Node B echoes A's states (same clocks) and tries to remove one at the same clock: no news.
    expect(await store.publish('d', b, [big, { clientId: 5, clock: 1, state: 'null' }])).toEqual([])
    // The owner removes it.
    expect(await store.publish('d', a, [{ clientId: 5, clock: 1, state: 'null' }])).toEqual([
      { clientId: 5, clock: 1, state: 'null' },
    ])

    const records = await store.load('d')
    expect(records).toEqual([
      { ...big, owner: a, nodeId: 'nA', updatedAtMs: expect.any(Number) as number },
    ])
    await vi.waitFor(() => expect(relayed).toHaveLength(2), { timeout: 5_000 })
    expect(relayed).toEqual([
      relayOf(a, [big, { clientId: 5, clock: 1, state: '{}' }]),
      relayOf(a, [{ clientId: 5, clock: 1, state: 'null' }]),
    ])
  })

  it('expires the states of dead nodes and stale states, announcing their removal', async () => {
    const { keys, store, relayed } = await setup('e')
    await store.publish('e', 'nA~t1/1', [big])
    await store.publish('e', 'nB~t2/1', [{ clientId: 6, clock: 3, state: '{"b":1}' }])
    await store.publish('e', 'nC~t3/1', [{ clientId: 7, clock: 1, state: '{"c":1}' }])
    const seven = (await fx.admin.hget(keys.awareness('e'), '7')) as string
    await fx.admin.hset(keys.awareness('e'), '7', seven.replace(/ \d+\n/, ' 1000\n'))
    await vi.waitFor(() => expect(relayed).toHaveLength(3), { timeout: 5_000 })

    expect(await store.expire('e', 'nX/sweeper', 30_000, ['nA'])).toBe(2)

    expect((await store.load('e')).map((r) => r.clientId)).toEqual([6])
    await vi.waitFor(() => expect(relayed).toHaveLength(4), { timeout: 5_000 })
    // One relay with both removals, in the hash's (unspecified) order.
    const removal = relayed[3] as Extract<ChannelMessage, { kind: 'awareness' }>
    expect(removal.origin).toBe('nX/sweeper')
    expect(decodeAwarenessUpdate(removal.update).sort((a, b) => a.clientId - b.clientId)).toEqual([
      { clientId: 7, clock: 2, state: 'null' },
      { clientId: 300, clock: 201, state: 'null' },
    ])
    expect(await store.expire('e', 'nX/sweeper', 30_000, ['nA'])).toBe(0)
  })
})
