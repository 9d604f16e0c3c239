/**
 * Redis Cluster failures under live editing (DESIGN.md invariant 8), with server nodes as child
 * processes: a master killed while clients type, once with asynchronous replication (what it
 * drops is counted) and once with REDIS_WAIT_REPLICAS=1 (nothing another client saw may be lost,
 * even from a writer that never comes back); a slot migration while clients type; and the
 * latency WAIT costs a delivery between two nodes (measured, printed, not asserted).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import {
  connectClient,
  expectedEntries,
  missingFrom,
  startTyping,
  type TestClient,
  type Typist,
  uniquePrefix,
  useRedisCluster,
} from '@streambed/testing'
import {
  blockedClients,
  expectConverged,
  type ClusterDeployment,
  lagReplicaOf,
  logOf,
  measureDelivery,
  startClusterDeployment,
  streamLog,
  typedAtLeast,
} from './testing/cluster.js'
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
        await typedAtLeast(
          typists,
          typists.map((t) => t.typed),
          10,
        )
      } finally {
        for (const t of typists) t.stop()
      }
      await expectConverged(clients, typists, b, doc)
      for (const c of clients) c.destroy()
    },
  )

  describe.each([
    ['asynchronous replication', 'async'],
    ['REDIS_WAIT_REPLICAS=1', 'wait'],
  ] as const)('a master killed while clients type, %s', (_title, mode) => {
    it('the replica takes over and every client converges', { timeout: 300_000 }, async () => {
      const dep = mode === 'wait' ? waiting : plain
      const [a, b] = serversOf(dep)
      const opts = { maxBackoffTime: 300 }
      // Two documents on one master: a busy one (typists on both nodes, a doomed writer, a
      // reader that never writes) and a quiet one (a doomed writer and two readers only).
      const busy = `failover-${mode}`
      const key = streamKey(dep, busy)
      const { id: masterId } = await rc.cluster.masterOf(key)
      let quiet = ''
      for (let i = 0; !quiet; i++) {
        const candidate = `quiet-${mode}-${i}`
        if ((await rc.cluster.masterOf(streamKey(dep, candidate))).id === masterId)
          quiet = candidate
      }
      const [w1, t1, t2, r1, w2, q1, q2] = await synced(
        ...[a, a, b, b].map((n) => connectClient(n.url, busy, opts)),
        ...[a, a, b].map((n) => connectClient(n.url, quiet, opts)),
      )
      const busyClients = [t1!, t2!, r1!]
      const quietClients = [q1!, q2!]
      const typists = [startTyping(t1!, 't1', 50), startTyping(t2!, 't2', 50)]
      const writers = [startTyping(w1!, 'w1', 50), startTyping(w2!, 'w2', 50)] as const
      const allSeen = () => {
        expect(missingFrom(r1!, expectedEntries([writers[0]]))).toEqual([])
        expect(missingFrom(q2!, expectedEntries([writers[1]]))).toEqual([])
      }
      let seen: [string[], string[]]
      let dropped: [string[], string[]]
      let late: Typist | undefined
      try {
        await typedAtLeast([...typists, ...writers], [0, 0, 0, 0], 10)
        const early = writers.map((w) => expectedEntries([w]))
        await vi.waitFor(
          () => {
            expect(missingFrom(r1!, early[0]!)).toEqual([])
            expect(missingFrom(q2!, early[1]!)).toEqual([])
          },
          { timeout: 20_000 },
        )

        // The master's replica falls behind: for 4 s it applies nothing the master sends.
        const { master, replica } = await lagReplicaOf(rc.cluster, key, 4000)
        await typedAtLeast(
          writers,
          writers.map((w) => w.typed),
          4,
        )
        for (const w of writers) w.stop()
        if (mode === 'async') {
          // Acknowledged at once: the other clients get the writers' last entries.
          await vi.waitFor(allSeen, { timeout: 20_000 })
        } else {
          // Their appends wait for the replica; nobody else gets them meanwhile.
          await vi.waitFor(async () => expect(await blockedClients(master)).toBeGreaterThan(0))
        }
        // The writers go away for good right after what others saw of them.
        seen = [
          [...expectedEntries([writers[0]])].filter((e) => logOf(...busyClients).has(e)),
          [...expectedEntries([writers[1]])].filter((e) => logOf(...quietClients).has(e)),
        ]
        w1!.destroy()
        w2!.destroy()
        await rc.cluster.killMaster(master)
        await rc.cluster.waitForFailover()
        expect((await rc.cluster.masterOf(key)).address).toBe(replica)
        const kept = [
          new Set(await streamLog(rc.cluster, key)),
          new Set(await streamLog(rc.cluster, streamKey(dep, quiet))),
        ]
        dropped = [seen[0].filter((e) => !kept[0]!.has(e)), seen[1].filter((e) => !kept[1]!.has(e))]
        console.log(
          `[${mode}] writers that never came back: others saw ${seen[0].length} + ${seen[1].length} ` +
            `of their entries; the failover dropped ${dropped[0].length} + ${dropped[1].length} ` +
            `(busy: ${dropped[0].join(' ')}; quiet: ${dropped[1].join(' ')})`,
        )
        // Back as the replica of the new master (WAIT needs one to go on).
        await rc.cluster.restartNode(master)
        await typedAtLeast(
          typists,
          typists.map((t) => t.typed),
          10,
        )
        // Someone joins the quiet document and writes.
        const [latecomer] = await synced(connectClient(b.url, quiet, opts))
        quietClients.push(latecomer!)
        late = startTyping(latecomer!, 'late', 50)
        await typedAtLeast([late], [0], 5)
      } finally {
        for (const t of [...typists, ...writers]) t.stop()
        late?.stop()
      }
      const finalBusy = await expectConverged(busyClients, typists, a, busy)
      const lostBusy = seen[0].filter((e) => !finalBusy.has(e))
      console.log(`[${mode}] busy document: lost after clients resynced: ${lostBusy.length}`)
      const finalQuiet = await expectConverged(quietClients, late ? [late] : [], a, quiet)
      const lostQuiet = seen[1].filter((e) => !finalQuiet.has(e))
      console.log(`[${mode}] quiet document: lost after clients resynced: ${lostQuiet.length}`)
      if (mode === 'wait') {
        expect(dropped).toEqual([[], []])
        expect([lostBusy, lostQuiet]).toEqual([[], []])
      }
      for (const c of [...busyClients, ...quietClients]) c.destroy()
    })
  })
})
