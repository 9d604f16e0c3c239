/**
 * Redis Cluster failures under live editing (DESIGN.md invariant 8), with server nodes as child
 * processes: a master killed while clients type with asynchronous replication (what it drops is
 * counted; the REDIS_WAIT_REPLICAS=1 case runs on a cluster of its own in
 * cluster-wait-failover.int.test.ts: two failovers in one cluster made the second restart
 * unstable under load); a slot migration while clients type; and the latency WAIT costs a
 * delivery between two nodes (measured, printed, not asserted).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  connectClient,
  startTyping,
  type TestClient,
  uniquePrefix,
  useRedisCluster,
} from '@streambed/testing'
import {
  type ClusterDeployment,
  expectConverged,
  measureDelivery,
  startClusterDeployment,
  typedAtLeast,
  typedMore,
} from './testing/cluster.js'
import { masterKilledWhileTyping } from './testing/failover-scenario.js'
import type { SpawnedProcessNode } from './testing/nodes.js'

const rc = useRedisCluster()
/** Asynchronous replication (the default) and WAIT for one replica: two nodes each. */
let plain: ClusterDeployment
let waiting: ClusterDeployment

beforeAll(async () => {
  const prefix = uniquePrefix('cl-failover')
  plain = await startClusterDeployment(rc.cluster, `${prefix}-async`, { servers: 2 })
  waiting = await startClusterDeployment(rc.cluster, `${prefix}-wait`, {
    servers: 2,
    env: { REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '1000' },
  })
}, 600_000)
afterAll(async () => {
  await plain?.close()
  await waiting?.close()
})

const streamKey = (dep: ClusterDeployment, doc: string) => `${dep.env.REDIS_PREFIX}:v1:{${doc}}:s`
const serversOf = (dep: ClusterDeployment) =>
  dep.servers as [SpawnedProcessNode, SpawnedProcessNode]
const synced = async (...clients: TestClient[]) => {
  await Promise.all(clients.map((c) => c.synced(30_000)))
  return clients
}
describe('on a Redis Cluster', () => {
  it('measures what REDIS_WAIT_REPLICAS=1 costs a delivery between two nodes', async () => {
    const rows: string[] = []
    for (const [label, dep] of [
      ['no WAIT', plain],
      ['WAIT 1 replica', waiting],
    ] as const) {
      const [a, b] = serversOf(dep)
      const [writer, reader] = await synced(
        connectClient(a.url, 'latency'),
        connectClient(b.url, 'latency'),
      )
      // Warm-up: the document is subscribed and seeded on both nodes.
      await measureDelivery(writer!, reader!, { count: 20, everyMs: 20 })
      const stats = await measureDelivery(writer!, reader!, { count: 200, everyMs: 20 })
      writer!.destroy()
      reader!.destroy()
      expect(stats.delivered).toBe(200)
      rows.push(
        `${label.padEnd(15)} p50 ${stats.p50Ms.toFixed(2)} ms, p99 ${stats.p99Ms.toFixed(2)} ms, max ${stats.maxMs.toFixed(2)} ms`,
      )
    }
    console.log(`writer → reader on another node, 200 updates at 50/s:\n${rows.join('\n')}`)
  })

  it(
    'moves a document’s slot to another master while clients type: nothing lost, all converge',
    { timeout: 300_000 },
    async () => {
      const [a, b] = serversOf(plain)
      const moved = 200
      // `reshard` moves a master's lowest slots: find a document among them.
      const [from, to] = await rc.cluster.masters()
      if (!from || !to) throw new Error('fewer than 2 masters')
      const [low] = from.slots[0]!
      let doc = ''
      for (let i = 0; !doc; i++) {
        const slot = Number(await rc.client.cluster('KEYSLOT', streamKey(plain, `moving-${i}`)))
        if (slot >= low && slot < low + moved) doc = `moving-${i}`
      }
      expect((await rc.cluster.masterOf(streamKey(plain, doc))).address).toBe(from.address)

      const clients = await synced(
        ...[a, a, b, b].map((n) => connectClient(n.url, doc, { maxBackoffTime: 300 })),
      )
      const typists = clients.map((c, i) => startTyping(c, `c${i}`, 50))
      try {
        await typedAtLeast(typists, [0, 0, 0, 0], 10)
        const before = typists.map((t) => t.typed)
        await rc.cluster.reshard(from, to, moved)
        expect((await rc.cluster.masterOf(streamKey(plain, doc))).address).toBe(to.address)
        // Typing went on during the move, and goes on after it.
        expect(typists.every((t, i) => t.typed > before[i]!)).toBe(true)
        await typedMore(typists, 10)
      } finally {
        for (const t of typists) t.stop()
      }
      await expectConverged(clients, typists, b, doc)
      for (const c of clients) c.destroy()
    },
  )

  it(
    'a master killed while clients type, asynchronous replication: the replica takes over and every client converges',
    { timeout: 300_000 },
    () => masterKilledWhileTyping(rc.cluster, plain, 'async'),
  )
})
