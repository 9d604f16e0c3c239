/**
 * The multi-node suite on a Redis Cluster (3 masters, 3 replicas): server nodes and a worker as
 * child processes with REDIS_CLUSTER_NODES. Clients on two nodes converge, awareness crosses
 * nodes, a SIGKILLed node loses nothing, the worker compacts documents of every master into
 * storage, and the operator's commands run through the workers.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createLogger } from '@streambed/common'
import { openStorage, type DocStorage } from '@streambed/storage'
import {
  captureUpdate,
  connectClient,
  docContent,
  expectedEntries,
  missingFrom,
  startBalancer,
  startTyping,
  type TestClient,
  uniquePrefix,
  useRedisCluster,
} from '@streambed/testing'
import { connectRedis, createDocStreams, createKeys, createRedis } from '@streambed/streams'
import { parseWorkerConfig } from '@streambed/worker-app'
import { startClusterDeployment, type ClusterDeployment } from './testing/cluster.js'
import { type SpawnedProcessNode } from './testing/nodes.js'
import { describeRun, jsonOf, labelledJson, runCli } from './testing/recovery.js'

const rc = useRedisCluster()
const prefix = uniquePrefix('cl-nodes')
let deployment: ClusterDeployment
let a: SpawnedProcessNode
let b: SpawnedProcessNode
/** A third node, for the crash test. */
let victim: SpawnedProcessNode
let storage: DocStorage

beforeAll(async () => {
  // Three server nodes and a worker: spawned together, once for the file (each takes seconds).
  deployment = await startClusterDeployment(rc.cluster, prefix, { servers: 3, workers: 1 })
  ;[a, b, victim] = deployment.servers as [
    SpawnedProcessNode,
    SpawnedProcessNode,
    SpawnedProcessNode,
  ]
  storage = await openStorage(parseWorkerConfig(deployment.env), createLogger({ level: 'silent' }))
}, 300_000)
afterAll(async () => {
  await storage?.close()
  await deployment?.close()
})

const streamKey = (doc: string) => `${prefix}:v1:{${doc}}:s`

const synced = async (...clients: TestClient[]) => {
  await Promise.all(clients.map((c) => c.synced(30_000)))
  return clients
}

/** Document names whose streams live on every master of the cluster. */
const docsOnEveryMaster = async (label: string, perMaster: number): Promise<string[]> => {
  const masters = await rc.cluster.masters()
  const byMaster = new Map(masters.map((m) => [m.id, [] as string[]]))
  for (let i = 0; [...byMaster.values()].some((d) => d.length < perMaster); i++) {
    const doc = `${label}-${i}`
    const docs = byMaster.get((await rc.cluster.masterOf(streamKey(doc))).id)
    if (docs && docs.length < perMaster) docs.push(doc)
  }
  return [...byMaster.values()].flat()
}

const userOf = (observer: TestClient, peer: TestClient): unknown =>
  (observer.provider.awareness.getStates().get(peer.doc.clientID) as { user?: unknown } | undefined)
    ?.user

describe('on a Redis Cluster', () => {
  it('clients on two nodes converge on text, map and array edits', async () => {
    const docs = await docsOnEveryMaster('converge', 1)
    for (const doc of docs) {
      const [alice, bob] = await synced(connectClient(a.url, doc), connectClient(b.url, doc))
      for (let i = 0; i < 20; i++) {
        alice!.doc.getText('text').insert(0, `a${i} `)
        bob!.doc.getText('text').insert(0, `b${i} `)
        alice!.doc.getMap('map').set(`a${i}`, i)
        bob!.doc.getMap('map').set(`k${i % 5}`, `bob-${i}`)
        bob!.doc.getArray('array').push([i])
        alice!.doc.getArray('array').insert(0, [`a${i}`])
        if (i % 4 === 3) bob!.doc.getArray('array').delete(0, 1)
      }
      await vi.waitFor(() => expect(docContent(bob!.doc)).toEqual(docContent(alice!.doc)), {
        timeout: 15_000,
        interval: 100,
      })
      expect(docContent(alice!.doc)).toMatchObject({ map: { a19: 19, k4: 'bob-19' } })
      // A client joining later on either node gets the same state.
      const [carol] = await synced(connectClient(b.url, doc))
      expect(docContent(carol!.doc)).toEqual(docContent(alice!.doc))
      for (const c of [alice!, bob!, carol!]) c.destroy()
    }
  })

  it('relays awareness across nodes, gives late joiners every state, and removes closed ones', async () => {
    const doc = 'awareness'
    const [alice, bob] = await synced(connectClient(a.url, doc), connectClient(b.url, doc))
    alice!.provider.awareness.setLocalStateField('user', { name: 'alice' })
    bob!.provider.awareness.setLocalStateField('user', { name: 'bob' })
    await vi.waitFor(() => {
      expect(userOf(bob!, alice!)).toEqual({ name: 'alice' })
      expect(userOf(alice!, bob!)).toEqual({ name: 'bob' })
    })
    const [carol] = await synced(connectClient(b.url, doc))
    await vi.waitFor(() => {
      expect(userOf(carol!, alice!)).toEqual({ name: 'alice' })
      expect(userOf(carol!, bob!)).toEqual({ name: 'bob' })
    })
    alice!.destroy()
    await vi.waitFor(
      () => {
        expect(bob!.provider.awareness.getStates().has(alice!.doc.clientID)).toBe(false)
        expect(carol!.provider.awareness.getStates().has(alice!.doc.clientID)).toBe(false)
      },
      { timeout: 5000 },
    )
    bob!.destroy()
    carol!.destroy()
  })

  it('loses nothing when a node is SIGKILLed while its clients type', async () => {
    const doc = 'crash'
    await using lb = await startBalancer([a.port, b.port, victim.port])
    const clients = await synced(
      ...Array.from({ length: 6 }, () => connectClient(lb.url, doc, { maxBackoffTime: 300 })),
    )
    const typists = clients.map((c, i) => startTyping(c, `c${i}`, 50))
    const typedAtLeast = (counts: number[], more: number) =>
      vi.waitFor(
        () => typists.forEach((t, i) => expect(t.typed).toBeGreaterThanOrEqual(counts[i]! + more)),
        { timeout: 60_000 },
      )
    await typedAtLeast([0, 0, 0, 0, 0, 0], 20)
    await victim.crash()
    expect(await victim.proc.exited).toBe('SIGKILL')
    await vi.waitFor(
      () => expect(typists.filter((t) => t.disconnects > 0).length).toBeGreaterThanOrEqual(2),
      { timeout: 20_000 },
    )
    await typedAtLeast(
      typists.map((t) => t.typed),
      20,
    )
    for (const t of typists) t.stop()
    const expected = expectedEntries(typists)
    await vi.waitFor(
      () => {
        for (const c of clients) expect(missingFrom(c, expected)).toEqual([])
      },
      { timeout: 30_000, interval: 200 },
    )
    const [fresh] = await synced(connectClient(lb.url, doc))
    const log = fresh!.doc.getArray<string>('log').toArray()
    expect(new Set(log)).toEqual(expected)
    expect(log).toHaveLength(expected.size)
    for (const c of [...clients, fresh!]) c.destroy()
  })

  it('compacts documents of every master: streams deleted, storage holds everything', async () => {
    const docs = await docsOnEveryMaster('compact', 3)
    const clients = docs.map<[TestClient, TestClient, number]>((doc, i) => [
      connectClient(a.url, doc),
      connectClient(b.url, doc),
      i,
    ])
    await synced(...clients.flatMap(([x, y]) => [x, y]))
    for (const [x, y, i] of clients) {
      for (let n = 0; n < 10; n++) {
        x.doc.getArray<string>('log').push([`x${i}:${n}`])
        y.doc.getArray<string>('log').push([`y${i}:${n}`])
        y.doc.getText('text').insert(0, `${n}`)
      }
    }
    const expectedOf = (i: number) =>
      new Set(Array.from({ length: 10 }, (_, n) => [`x${i}:${n}`, `y${i}:${n}`]).flat())
    await vi.waitFor(
      async () => {
        for (const [j, doc] of docs.entries()) {
          expect(await rc.client.exists(streamKey(doc))).toBe(0)
          const stored = await storage.load(doc)
          const ydoc = new Y.Doc()
          if (stored) Y.applyUpdate(ydoc, stored.state)
          const log = ydoc.getArray<string>('log').toArray()
          expect(new Set(log)).toEqual(expectedOf(j))
          expect(log).toHaveLength(20)
          expect(docContent(ydoc)).toEqual(docContent(clients[j]![0].doc))
          expect(stored?.watermark).toBe(await rc.client.hget(`${prefix}:v1:{${doc}}:m`, 'last'))
        }
      },
      { timeout: 30_000, interval: 250 },
    )
    // Every task was settled: nothing queued, delayed or pending on any shard.
    const queues = await Promise.all(
      Array.from({ length: 8 }, (_, s) => rc.client.xlen(`${prefix}:v1:{q${s}}:tasks`)),
    )
    expect(queues.every((n) => n === 0)).toBe(true)
    // A fresh client gets the document from storage alone.
    const [fresh] = await synced(connectClient(b.url, docs[0]!))
    expect(docContent(fresh!.doc)).toEqual(docContent(clients[0]![0].doc))
    for (const c of [...clients.flatMap(([x, y]) => [x, y]), fresh!]) c.destroy()
  })

  it('backs up and verifies through the workers; inspect summarises streams of every master', async () => {
    const docs = await docsOnEveryMaster('backup', 2)
    for (const doc of docs) {
      const [writer, reader] = await synced(connectClient(a.url, doc), connectClient(b.url, doc))
      writer!.doc.getArray<string>('log').push([doc])
      await vi.waitFor(() => expect(reader!.doc.getArray('log').toArray()).toEqual([doc]))
      writer!.destroy()
      reader!.destroy()
    }
    // Streams on every master that no worker compacts (a prefix of their own), for inspect.
    const idlePrefix = uniquePrefix('cl-idle')
    const idleDocs = await docsOnEveryMaster('idle', 1)
    const redis = createRedis({ url: deployment.env.REDIS_URL!, clusterNodes: rc.cluster.seeds })
    try {
      await connectRedis(redis, deployment.env.REDIS_URL!)
      const streams = createDocStreams({ redis, keys: createKeys(idlePrefix), queueShards: 8 })
      for (const doc of idleDocs)
        await streams.append(
          doc,
          captureUpdate((d) => d.getText('t').insert(0, doc)),
          'test/1',
        )
    } finally {
      redis.disconnect()
    }

    const dest = await mkdtemp(join(tmpdir(), 'streambed-cluster-backup-'))
    // Storage is not prefixed: inspect of the idle prefix gets an empty storage of its own, or it
    // would count the deployment's stored documents.
    const idleStorage = await mkdtemp(join(tmpdir(), 'streambed-cluster-idle-'))
    try {
      const env = deployment.env
      // Without --inline: submitted as an operation that the worker runs.
      const backup = await runCli(['backup', dest], env)
      expect(backup.code, describeRun(backup)).toBe(0)
      expect(backup.stderr).toMatch(/^backup: operation backup-\S+$/m)
      const summary = labelledJson<{ location: string; totals: { documents: number } }>(
        backup,
        'backup complete',
      )
      const manifest = JSON.parse(await readFile(join(dest, 'manifest.json'), 'utf8')) as {
        documents: { name: string }[]
      }
      const names = manifest.documents.map((d) => d.name)
      expect(names).toEqual(expect.arrayContaining(docs))
      expect(summary.totals.documents).toBe(names.length)

      const [verify, inspect] = await Promise.all([
        runCli(['verify', ...docs], env),
        runCli(['inspect', '--json'], {
          ...env,
          REDIS_PREFIX: idlePrefix,
          STORAGE_DIR: idleStorage,
        }),
      ])
      expect(verify.code, describeRun(verify)).toBe(0)
      expect(verify.stderr).toMatch(/^verify: operation verify-\S+$/m)
      expect(verify.stdout).toBe('verified: no mismatch\n')
      const summary2 = jsonOf<{
        documents: { total: number; streams: number; stored: number }
        streamBytes: number
        queue: { shards: unknown[]; totals: { queued: number } }
      }>(inspect)
      expect(summary2.documents).toEqual({ total: 3, streams: 3, stored: 0 })
      expect(summary2.streamBytes).toBeGreaterThan(0)
      expect(summary2.queue.shards).toHaveLength(8)
      expect(summary2.queue.totals.queued).toBe(3)
    } finally {
      await rm(dest, { recursive: true, force: true })
      await rm(idleStorage, { recursive: true, force: true })
    }
  }, 240_000)
})
