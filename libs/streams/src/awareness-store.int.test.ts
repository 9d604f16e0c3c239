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

/** A connection sending awareness: anonymous unless a subject tag is given. */
const sender = (origin: string, tag = '-', mayTake = 16) => ({ origin, subjectTag: tag, mayTake })
const result = (accepted: AwarenessEntry[], spoofed = 0, overLimit = 0) => ({
  accepted,
  spoofed,
  overLimit,
})

describe('awareness store', () => {
  it('stores and relays news, drops echoes, and takes removals only from the owner', async () => {
    const { store, relayed } = await setup('d')
    const a = sender('nA~t1/1')
    const b = sender('nB~t2/7')

    expect(await store.publish('d', a, [big, { clientId: 5, clock: 1, state: '{}' }])).toEqual(
      result([big, { clientId: 5, clock: 1, state: '{}' }]),
    )
    // Node B echoes A's states (same clocks) and tries to remove one at the same clock: no news.
    expect(await store.publish('d', b, [big, { clientId: 5, clock: 1, state: 'null' }])).toEqual(
      result([]),
    )
    // The owner removes it.
    expect(await store.publish('d', a, [{ clientId: 5, clock: 1, state: 'null' }])).toEqual(
      result([{ clientId: 5, clock: 1, state: 'null' }]),
    )

    const records = await store.load('d')
    expect(records).toEqual([
      {
        ...big,
        owner: a.origin,
        nodeId: 'nA',
        updatedAtMs: expect.any(Number) as number,
        subjectTag: '-',
      },
    ])
    await vi.waitFor(() => expect(relayed).toHaveLength(2), { timeout: 5_000 })
    expect(relayed).toEqual([
      relayOf(a.origin, [big, { clientId: 5, clock: 1, state: '{}' }]),
      relayOf(a.origin, [{ clientId: 5, clock: 1, state: 'null' }]),
    ])
  })

  it('refuses and counts another connection setting or removing an id it does not own', async () => {
    const { store, relayed } = await setup('s')
    const victim = sender('nA~t1/1')
    const attacker = sender('nB~t2/9')
    await store.publish('s', victim, [{ clientId: 42, clock: 3, state: '{"name":"victim"}' }])
    expect(
      await store.publish('s', attacker, [
        { clientId: 42, clock: 9, state: '{"name":"evil"}' },
        { clientId: 42, clock: 10, state: 'null' },
      ]),
    ).toEqual(result([], 2))
    expect((await store.load('s')).map((r) => [r.clientId, r.state])).toEqual([
      [42, '{"name":"victim"}'],
    ])
    // The owner goes on as before.
    expect(
      await store.publish('s', victim, [{ clientId: 42, clock: 4, state: '{"v":2}' }]),
    ).toEqual(result([{ clientId: 42, clock: 4, state: '{"v":2}' }]))
    await vi.waitFor(() => expect(relayed).toHaveLength(2), { timeout: 5_000 })
    expect(relayed.every((m) => m.kind === 'awareness' && m.origin === victim.origin)).toBe(true)
  })

  it('lets a connection of the same subject, or any after the owner went silent, take an id over', async () => {
    const { keys, store } = await setup('t')
    const old = sender('nA~t1/1', 'user-7')
    await store.publish('t', old, [{ clientId: 8, clock: 1, state: '{"tab":1}' }])
    // The same user reconnects before the server noticed the old socket was gone.
    const again = sender('nB~t2/3', 'user-7')
    expect(
      await store.publish('t', again, [{ clientId: 8, clock: 2, state: '{"tab":2}' }]),
    ).toEqual(result([{ clientId: 8, clock: 2, state: '{"tab":2}' }]))
    // The old socket's close no longer removes it.
    expect(await store.publish('t', old, [{ clientId: 8, clock: 3, state: 'null' }])).toEqual(
      result([], 1),
    )
    // An anonymous owner that stopped renewing (30 s) loses the id to whoever sets it next.
    const quiet = sender('nA~t1/5')
    await store.publish('t', quiet, [{ clientId: 9, clock: 1, state: '{}' }])
    const nine = (await fx.admin.hget(keys.awareness('t'), '9')) as string
    await fx.admin.hset(keys.awareness('t'), '9', nine.replace(/^(\d+ \S+) \d+/, '$1 1000'))
    expect(
      await store.publish('t', sender('nC~t3/1'), [{ clientId: 9, clock: 2, state: '{"x":1}' }]),
    ).toEqual(result([{ clientId: 9, clock: 2, state: '{"x":1}' }]))
  })

  it('lets a connection hold at most its limit of client ids', async () => {
    const { store } = await setup('l')
    const entries = Array.from({ length: 5 }, (_, i) => ({ clientId: i, clock: 1, state: '{}' }))
    const reply = await store.publish('l', sender('nA~t1/1', '-', 2), entries)
    expect(reply.accepted.map((e) => e.clientId)).toEqual([0, 1])
    expect(reply.overLimit).toBe(3)
    expect(await store.load('l')).toHaveLength(2)
  })

  it('expires the states of dead nodes and stale states, announcing their removal', async () => {
    const { keys, store, relayed } = await setup('e')
    await store.publish('e', sender('nA~t1/1'), [big])
    await store.publish('e', sender('nB~t2/1'), [{ clientId: 6, clock: 3, state: '{"b":1}' }])
    await store.publish('e', sender('nC~t3/1'), [{ clientId: 7, clock: 1, state: '{"c":1}' }])
    const seven = (await fx.admin.hget(keys.awareness('e'), '7')) as string
    await fx.admin.hset(keys.awareness('e'), '7', seven.replace(/^(\d+ \S+) \d+/, '$1 1000'))
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
