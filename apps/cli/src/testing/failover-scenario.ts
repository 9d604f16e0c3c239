/**
 * A master killed while clients type (DESIGN.md invariant 8), shared by the asynchronous and the
 * REDIS_WAIT_REPLICAS=1 failover files: two documents on one master, a busy one (typists on both
 * nodes, a writer that never comes back, a reader that never writes) and a quiet one (a writer that
 * never comes back and two readers, then a latecomer); the master's replica lags, the master is
 * SIGKILLed, the replica takes over, the old master comes back as its replica. Every client must
 * converge; with WAIT, nothing another client saw may be lost.
 */
import { expect, vi } from 'vitest'
import {
  connectClient,
  expectedEntries,
  missingFrom,
  type RedisCluster,
  startTyping,
  type TestClient,
  type Typist,
} from '@streambed/testing'
import {
  blockedClients,
  type ClusterDeployment,
  expectConverged,
  lagReplicaOf,
  logOf,
  streamLog,
  typedAtLeast,
  typedMore,
} from './cluster.js'
import type { SpawnedProcessNode } from './nodes.js'

const streamKey = (dep: ClusterDeployment, doc: string) => `${dep.env.REDIS_PREFIX}:v1:{${doc}}:s`
const synced = async (...clients: TestClient[]) => {
  await Promise.all(clients.map((c) => c.synced(30_000)))
  return clients
}

export const masterKilledWhileTyping = async (
  cluster: RedisCluster,
  dep: ClusterDeployment,
  mode: 'async' | 'wait',
): Promise<void> => {
  const [a, b] = dep.servers as [SpawnedProcessNode, SpawnedProcessNode]
  const opts = { maxBackoffTime: 300 }
  // Two documents on one master: a busy one (typists on both nodes, a doomed writer, a
  // reader that never writes) and a quiet one (a doomed writer and two readers only).
  const busy = `failover-${mode}`
  const key = streamKey(dep, busy)
  const { id: masterId } = await cluster.masterOf(key)
  let quiet = ''
  for (let i = 0; !quiet; i++) {
    const candidate = `quiet-${mode}-${i}`
    if ((await cluster.masterOf(streamKey(dep, candidate))).id === masterId) quiet = candidate
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
    const { master, replica } = await lagReplicaOf(cluster, key, 4000)
    await typedMore(writers, 4)
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
    await cluster.killMaster(master)
    await cluster.waitForFailover()
    expect((await cluster.masterOf(key)).address).toBe(replica)
    const kept = [
      new Set(await streamLog(cluster, key)),
      new Set(await streamLog(cluster, streamKey(dep, quiet))),
    ]
    dropped = [seen[0].filter((e) => !kept[0]!.has(e)), seen[1].filter((e) => !kept[1]!.has(e))]
    console.log(
      `[${mode}] writers that never came back: others saw ${seen[0].length} + ${seen[1].length} ` +
        `of their entries; the failover dropped ${dropped[0].length} + ${dropped[1].length} ` +
        `(busy: ${dropped[0].join(' ')}; quiet: ${dropped[1].join(' ')})`,
    )
    // Back as the replica of the new master (WAIT needs one to go on).
    await cluster.restartNode(master)
    await typedMore(typists, 10)
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
}
