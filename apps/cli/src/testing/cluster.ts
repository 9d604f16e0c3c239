/**
 * Test helpers (not built) for deployments on a Redis Cluster: server nodes and workers as child
 * processes with REDIS_CLUSTER_NODES, a replica made to fall behind its master, a document's
 * stream read back as a client would apply it, and delivery latency between two nodes.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import * as Y from 'yjs'
import { expect, vi } from 'vitest'
import {
  connectClient,
  docContent,
  expectedEntries,
  missingFrom,
  type RedisCluster,
  type TestClient,
  type Typist,
} from '@streambed/testing'
import { fastCompaction } from '@streambed/worker-app/testing'
import { spawnNode, type SpawnedProcessNode } from './nodes.js'

/** The environment of every process of a deployment on `cluster`: one prefix, one storage dir. */
export const clusterEnv = (
  cluster: RedisCluster,
  prefix: string,
  storageDir: string,
): Record<string, string> => ({
  // With REDIS_CLUSTER_NODES only the URL's scheme and credentials count.
  REDIS_URL: `redis://${cluster.nodes[0]}`,
  REDIS_CLUSTER_NODES: cluster.nodeList,
  REDIS_PREFIX: prefix,
  STORAGE: 'fs',
  STORAGE_DIR: storageDir,
  // A crashed node's awareness states expire in ~1.5 s (y-protocols alone takes 30 s).
  NODE_HEARTBEAT_MS: '300',
  NODE_TIMEOUT_MS: '1500',
})

let counter = 0

/**
 * `streambed server` or `streambed worker` as a child process (spawnNode) with a long start
 * timeout: a cluster test starts several processes next to six Redis servers on two shared cores,
 * and tsx compiles the source in each.
 */
export const spawnClusterProcess = (
  env: Record<string, string>,
  command: 'server' | 'worker',
  startTimeoutMs = 120_000,
): Promise<SpawnedProcessNode> => {
  const nodeId = env.NODE_ID ?? `cluster-${command}-${process.pid}-${counter++}`
  return spawnNode({ NODE_ID: nodeId, WORKER_ID: nodeId, ...env }, { command, startTimeoutMs })
}

export interface ClusterDeployment {
  readonly env: Record<string, string>
  readonly storageDir: string
  readonly servers: SpawnedProcessNode[]
  readonly workers: SpawnedProcessNode[]
  /** SIGKILL to every process, then the storage directory removed. */
  close(): Promise<void>
}

/**
 * `servers` server nodes and `workers` workers (fast compaction) as child processes sharing one
 * storage directory, started two at a time.
 */
export const startClusterDeployment = async (
  cluster: RedisCluster,
  prefix: string,
  opts: { servers: number; workers?: number; env?: Record<string, string> },
): Promise<ClusterDeployment> => {
  const storageDir = await mkdtemp(join(tmpdir(), 'streambed-cluster-'))
  const env = { ...clusterEnv(cluster, prefix, storageDir), ...opts.env }
  const workerEnv = { ...env, ...fastCompaction, JOBS_LOCK_MS: '2000' }
  const plan = [
    ...Array.from({ length: opts.servers }, () => () => spawnClusterProcess(env, 'server')),
    ...Array.from(
      { length: opts.workers ?? 0 },
      () => () => spawnClusterProcess(workerEnv, 'worker'),
    ),
  ]
  const procs: SpawnedProcessNode[] = []
  const close = async () => {
    await Promise.all(procs.map((p) => p.crash()))
    await rm(storageDir, { recursive: true, force: true })
  }
  try {
    for (let i = 0; i < plan.length; i += 2) {
      const started = await Promise.allSettled(plan.slice(i, i + 2).map((start) => start()))
      for (const s of started) if (s.status === 'fulfilled') procs.push(s.value)
      const failed = started.find((s) => s.status === 'rejected')
      if (failed) throw failed.reason
    }
  } catch (err) {
    await close()
    throw err
  }
  return {
    env,
    storageDir,
    servers: procs.slice(0, opts.servers),
    workers: procs.slice(opts.servers),
    close,
  }
}

/** A plain connection to one cluster node (`127.0.0.1:port`), for INFO, READONLY reads, pauses. */
export const connectNode = async (address: string): Promise<Redis> => {
  const [host, port] = address.split(':') as [string, string]
  const conn = new Redis({ host, port: Number(port), lazyConnect: true, maxRetriesPerRequest: 0 })
  conn.on('error', () => {})
  await conn.connect()
  return conn
}

/**
 * Makes the replica of the master serving `key` stop applying the replication stream for `ms`
 * (CLIENT PAUSE ALL holds its master link too): writes acknowledged meanwhile exist only on the
 * master, as with a lagging replica. The pause runs out on its own (Redis 7.0 queues even CLIENT
 * UNPAUSE behind it). Returns the master's and the replica's addresses.
 */
export const lagReplicaOf = async (
  cluster: RedisCluster,
  key: string,
  ms: number,
): Promise<{ master: string; replica: string }> => {
  const master = await cluster.masterOf(key)
  const replica = (await cluster.replicas()).find((r) => r.masterId === master.id)
  if (!replica) throw new Error(`master ${master.address} has no replica`)
  const conn = await connectNode(replica.address)
  try {
    await conn.call('CLIENT', 'PAUSE', String(ms), 'ALL')
  } finally {
    conn.disconnect()
  }
  return { master: master.address, replica: replica.address }
}

/** Clients of the master at `address` blocked in a command (WAIT counts). */
export const blockedClients = async (address: string): Promise<number> => {
  const conn = await connectNode(address)
  try {
    return Number(/blocked_clients:(\d+)/.exec(await conn.info('clients'))?.[1] ?? 0)
  } finally {
    conn.disconnect()
  }
}

/**
 * The array `log` of what a document's stream holds now, its entries applied in order (read from
 * the master serving `streamKey`; no storage: use it where no worker compacts).
 */
export const streamLog = async (cluster: RedisCluster, streamKey: string): Promise<string[]> => {
  const conn = await connectNode((await cluster.masterOf(streamKey)).address)
  try {
    const entries = (await conn.xrangeBuffer(streamKey, '-', '+')) as [Buffer, Buffer[]][]
    const doc = new Y.Doc()
    for (const [, fields] of entries) {
      const at = fields.findIndex((f) => f.toString() === 'u')
      if (at >= 0 && fields[at + 1]) Y.applyUpdate(doc, fields[at + 1] as Buffer)
    }
    return doc.getArray<string>('log').toArray()
  } finally {
    conn.disconnect()
  }
}

/** The entries of the array `log` that a set of clients hold, together. */
export const logOf = (...clients: TestClient[]): Set<string> =>
  new Set(clients.flatMap((c) => c.doc.getArray<string>('log').toArray()))

export interface LatencyStats {
  readonly delivered: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
}

const percentile = (sorted: readonly number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN

/**
 * S1-style delivery latency: `writer` pushes `count` numbers into the array `lat`, one every
 * `everyMs`; each is timed from the push to its arrival at `reader` (both clients in this
 * process, on different nodes). Resolves once every one arrived (or `timeoutMs` passed).
 */
export const measureDelivery = async (
  writer: TestClient,
  reader: TestClient,
  opts: { count: number; everyMs: number; timeoutMs?: number },
): Promise<LatencyStats> => {
  const sentAt = new Map<number, number>()
  const latencies: number[] = []
  let allArrived: () => void = () => {}
  const arrived = new Promise<void>((resolve) => (allArrived = resolve))
  const incoming = reader.doc.getArray<number>('lat')
  const observer = (event: Y.YArrayEvent<number>) => {
    const now = performance.now()
    for (const delta of event.changes.delta) {
      for (const n of (delta.insert as number[] | undefined) ?? []) {
        const at = sentAt.get(n)
        if (at !== undefined) latencies.push(now - at)
      }
    }
    if (latencies.length >= opts.count) allArrived()
  }
  incoming.observe(observer)
  try {
    const outgoing = writer.doc.getArray<number>('lat')
    for (let i = 0; i < opts.count; i++) {
      sentAt.set(i, performance.now())
      outgoing.push([i])
      // Pacing, as S1 offers a fixed rate.
      await sleep(opts.everyMs)
    }
    const timeout = new AbortController()
    await Promise.race([
      arrived,
      sleep(opts.timeoutMs ?? 20_000, undefined, { signal: timeout.signal }).catch(() => {
        // aborted: everything arrived first
      }),
    ])
    timeout.abort()
  } finally {
    incoming.unobserve(observer)
  }
  const sorted = [...latencies].sort((a, b) => a - b)
  return {
    delivered: latencies.length,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted[sorted.length - 1] ?? NaN,
  }
}

const LOG = { log: 'array' } as const

/** Waits until each typist typed `more` entries beyond its count in `counts`. */
export const typedAtLeast = (typists: readonly Typist[], counts: readonly number[], more: number) =>
  vi.waitFor(
    () => typists.forEach((t, i) => expect(t.typed).toBeGreaterThanOrEqual(counts[i]! + more)),
    { timeout: 60_000 },
  )

/** Waits until each typist typed `more` entries beyond what it has typed now. */
export const typedMore = (typists: readonly Typist[], more: number) =>
  typedAtLeast(
    typists,
    typists.map((t) => t.typed),
    more,
  )

/**
 * Waits until every client holds every entry the typists typed and all hold the same state, then
 * checks a fresh client on `freshOn` gets exactly that (each entry once). Returns its log.
 */
export const expectConverged = async (
  clients: readonly TestClient[],
  typists: readonly Typist[],
  freshOn: SpawnedProcessNode,
  doc: string,
): Promise<Set<string>> => {
  const expected = expectedEntries(typists)
  await vi.waitFor(
    () => {
      for (const c of clients) expect(missingFrom(c, expected)).toEqual([])
      const first = docContent(clients[0]!.doc, LOG)
      for (const c of clients.slice(1)) expect(docContent(c.doc, LOG)).toEqual(first)
    },
    { timeout: 60_000, interval: 250 },
  )
  const fresh = connectClient(freshOn.url, doc)
  try {
    await fresh.synced(30_000)
    const log = fresh.doc.getArray<string>('log').toArray()
    expect(missingFrom(fresh, expected)).toEqual([])
    expect(log).toHaveLength(new Set(log).size)
    expect(docContent(fresh.doc, LOG)).toEqual(docContent(clients[0]!.doc, LOG))
    return new Set(log)
  } finally {
    fresh.destroy()
  }
}
