import { Redis, type Cluster } from 'ioredis'
import { describe, expect, it, vi } from 'vitest'
import { useRedisCluster, type ClusterNodeView } from './redis-cluster.js'
import { uniquePrefix } from './redis-server.js'

/** The Cluster's own connection to `node` (the one its commands for that node's slots use). */
const connectionTo = (client: Cluster, node: ClusterNodeView): Redis => {
  const found = client
    .nodes('master')
    .find((r) => `${r.options.host}:${r.options.port}` === node.address)
  if (!found) throw new Error(`the client has no connection to master ${node.address}`)
  return found
}

const byAddress = (views: readonly ClusterNodeView[], address: string): ClusterNodeView => {
  const found = views.find((v) => v.address === address)
  if (!found) throw new Error(`${address} is not among ${views.map((v) => v.address).join(', ')}`)
  return found
}

/** Sets every key to its own name, a batch at a time (each SET routed to its slot's master). */
const writeAll = async (client: Cluster, keys: readonly string[]) => {
  for (let i = 0; i < keys.length; i += 500)
    await Promise.all(keys.slice(i, i + 500).map((k) => client.set(k, k)))
}

/** The keys whose value is not their own name. */
const unreadable = async (client: Cluster, keys: readonly string[]) => {
  const wrong: string[] = []
  for (let i = 0; i < keys.length; i += 500) {
    const batch = keys.slice(i, i + 500)
    const values = await Promise.all(batch.map((k) => client.get(k)))
    batch.forEach((k, j) => {
      if (values[j] !== k) wrong.push(`${k}=${values[j]}`)
    })
  }
  return wrong
}

describe('startRedisCluster', () => {
  const rc = useRedisCluster()

  it('starts 3 masters with a replica each, serving all 16384 slots', async () => {
    const masters = await rc.cluster.masters()
    const replicas = await rc.cluster.replicas()
    expect(masters).toHaveLength(3)
    expect(replicas).toHaveLength(3)
    expect(masters.reduce((n, m) => n + m.slotCount, 0)).toBe(16384)
    expect(replicas.map((r) => r.masterId).sort()).toEqual(masters.map((m) => m.id).sort())
    expect(rc.cluster.nodeList).toMatch(/^127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+){5}$/)
    expect(rc.cluster.nodeList.split(',')).toEqual(rc.cluster.nodes)
    expect(rc.cluster.seeds.map((s) => `${s.host}:${s.port}`)).toEqual(rc.cluster.nodes)
  })

  it('reads back a key written through client(), held by the master masterOf names', async () => {
    const key = `${uniquePrefix('roundtrip')}:k`
    await rc.client.set(key, 'v1')
    expect(await rc.client.get(key)).toBe('v1')
    // A node answers MOVED for a slot it does not serve: the direct read proves masterOf right.
    expect(await connectionTo(rc.client, await rc.cluster.masterOf(key)).get(key)).toBe('v1')
  })

  it('flushAll empties every master', async () => {
    const p = uniquePrefix('flush')
    await writeAll(
      rc.client,
      Array.from({ length: 50 }, (_, i) => `${p}:${i}`),
    )
    await rc.cluster.flushAll()
    const sizes = await Promise.all(rc.client.nodes('master').map((m) => m.dbsize()))
    expect(sizes).toEqual([0, 0, 0])
  })

  it('delivers SPUBLISH to an SSUBSCRIBE on a channel of every master', async () => {
    const p = uniquePrefix('spubsub')
    const channels: string[] = []
    for (const master of await rc.cluster.masters()) {
      for (let i = 0; ; i++) {
        const channel = `${p}:ch:${i}`
        if ((await rc.cluster.masterOf(channel)).id !== master.id) continue
        channels.push(channel)
        break
      }
    }
    const sub = rc.cluster.client({ shardedSubscribers: true })
    const received: string[] = []
    sub.on('smessage', (channel: string, message: string) => received.push(`${channel} ${message}`))
    // Channels of different slots go to different nodes: one SSUBSCRIBE each.
    for (const channel of channels) await sub.ssubscribe(channel)
    for (const channel of channels) expect(await rc.client.spublish(channel, 'hello')).toBe(1)
    const expected = channels.map((c) => `${c} hello`).sort()
    await vi.waitFor(() => expect([...received].sort()).toEqual(expected), { timeout: 10_000 })
  })

  it('reshards slots while a writer runs; every key reads back', { timeout: 180_000 }, async () => {
    const p = uniquePrefix('reshard')
    const [from, to] = await rc.cluster.masters()
    if (!from || !to) throw new Error('fewer than 2 masters')
    const moved = 300
    // Keys already in place, so the moved slots hold keys to migrate.
    const prefilled = Array.from({ length: 3000 }, (_, i) => `${p}:pre:${i}`)
    await writeAll(rc.client, prefilled)

    const written: string[] = []
    const errors: string[] = []
    let stop = false
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const key = `${p}:w:${i}`
        try {
          await rc.client.set(key, key)
          written.push(key)
        } catch (err) {
          errors.push(`${key}: ${err instanceof Error ? err.message : String(err)}`)
        }
      }
    })()
    let writtenDuring: number
    try {
      await vi.waitFor(() => expect(written.length).toBeGreaterThan(10), { timeout: 10_000 })
      const before = written.length
      await rc.cluster.reshard(from, to, moved)
      writtenDuring = written.length - before
    } finally {
      stop = true
      await writer
    }

    expect(errors).toEqual([])
    expect(writtenDuring).toBeGreaterThan(0)
    const after = await rc.cluster.masters()
    expect(byAddress(after, from.address).slotCount).toBe(from.slotCount - moved)
    expect(byAddress(after, to.address).slotCount).toBe(to.slotCount + moved)
    // Keys now in the slots `to` gained were migrated (or written there after the move).
    const owned = (v: ClusterNodeView) =>
      new Set(v.slots.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i)))
    const before = owned(to)
    const gained = [...owned(byAddress(after, to.address))].filter((s) => !before.has(s))
    expect(gained).toHaveLength(moved)
    const target = connectionTo(rc.client, byAddress(after, to.address))
    const counts = await Promise.all(
      gained.map(async (s) => Number(await target.cluster('COUNTKEYSINSLOT', s))),
    )
    expect(counts.reduce((a, b) => a + b, 0)).toBeGreaterThan(0)
    expect(await unreadable(rc.client, [...prefilled, ...written])).toEqual([])
  })

  it(
    'fails a killed master over to its replica keeping a synced write; the node rejoins as a replica',
    { timeout: 180_000 },
    async () => {
      const p = uniquePrefix('failover')
      // One hash tag: the key and the channel share a slot, hence a master.
      const key = `{${p}}:doc`
      const channel = `{${p}}:ch`
      await rc.client.set(key, 'synced')
      const master = await rc.cluster.masterOf(key)
      // WAIT counts replicas that acknowledged this connection's writes so far, SET included.
      expect(
        await connectionTo(rc.client, master).call('WAIT', '1', '1000'),
      ).toBeGreaterThanOrEqual(1)
      const replica = (await rc.cluster.replicas()).find((r) => r.masterId === master.id)
      if (!replica) throw new Error(`master ${master.address} has no replica`)

      const sub = rc.cluster.client({ shardedSubscribers: true })
      const received: string[] = []
      sub.on('smessage', (_channel: string, message: string) => received.push(message))
      await sub.ssubscribe(channel)

      const killed = await rc.cluster.killMaster(key, { signal: 'SIGKILL' })
      expect(killed).toBe(master.address)
      await rc.cluster.waitForFailover()

      const promoted = await rc.cluster.masterOf(key)
      expect(promoted.address).toBe(replica.address)
      expect(await rc.client.get(key)).toBe('synced')
      // The sharded subscriber resubscribes on the new master once it sees the new slot owner.
      await vi.waitFor(
        async () => {
          await rc.client.spublish(channel, 'after failover')
          expect(received).toContain('after failover')
        },
        { timeout: 20_000, interval: 250 },
      )

      await rc.cluster.restartNode(killed)
      const replicas = await rc.cluster.replicas()
      expect(byAddress(replicas, killed).masterId).toBe(promoted.id)
      expect(await rc.cluster.masters()).toHaveLength(3)
      expect(replicas).toHaveLength(3)
      // The rejoined node synced from its new master (a replica reads with READONLY).
      const [host = '', port = ''] = killed.split(':')
      const direct = new Redis({ host, port: Number(port), lazyConnect: true })
      try {
        await direct.connect()
        await direct.call('READONLY')
        expect(await direct.get(key)).toBe('synced')
      } finally {
        direct.disconnect()
      }
    },
  )
})
