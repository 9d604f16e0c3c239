/**
 * CLUSTER — Streambed on a Redis Cluster (3 masters with a replica each, libs/testing) against one
 * standalone Redis, in the same run: the S4 throughput ceiling and Redis CPU per update, S1 fan-out
 * latency (and what REDIS_WAIT_REPLICAS=1 adds to it), S2 with 1 000 documents, and a master killed
 * while clients type (time to fail over, time until deliveries resume, what was lost).
 */
import { Cluster, Redis } from 'ioredis'
import {
  type RedisCluster,
  type TestClient,
  connectClient,
  expectedEntries,
  missingFrom,
  startRedisCluster,
  startTyping,
} from '@streambed/testing'
import { type Deployment, startCluster, startOnRedisCluster } from './cluster.js'
import type { BenchContext, Scenario } from './framework.js'
import { sleep } from './load.js'
import { RATE_LIMIT, measureFanout } from './s1-fanout.js'
import { measureManyDocs } from './s2-many-docs.js'
import { ceilingDocs, measureCeiling } from './s4-ceiling.js'
import { fmt, table, type Row } from './stats.js'

const nodeEnv = { WS_MAX_MESSAGES_PER_SECOND: String(RATE_LIMIT) }
const waitEnv = { REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '1000' }

/** When `check` first held (performance.now(), polled every 20 ms); NaN after `timeoutMs`. */
const until = async (check: () => boolean, timeoutMs: number): Promise<number> => {
  const started = performance.now()
  while (!check()) {
    if (performance.now() - started > timeoutMs) return NaN
    await sleep(20)
  }
  return performance.now()
}

const logOf = (c: TestClient) => new Set(c.doc.getArray<string>('log').toArray())

/**
 * Memory of S4's document streams (MEMORY USAGE, exact) and their entries: with no workers
 * nothing is compacted, so over a run this is Redis memory per uncompacted update.
 */
const streamMemory = (d: Deployment, rc: RedisCluster) => {
  const client: Redis | Cluster = d.env.REDIS_CLUSTER_NODES
    ? rc.client()
    : new Redis(d.env.REDIS_URL ?? '')
  const keys = ceilingDocs.map((doc) => `${d.env.REDIS_PREFIX}:v1:{${doc}}:s`)
  return {
    read: async () => {
      const bytes = await Promise.all(
        keys.map(
          (k) => client.call('MEMORY', 'USAGE', k, 'SAMPLES', '0') as Promise<number | null>,
        ),
      )
      const lengths = await Promise.all(keys.map((k) => client.xlen(k)))
      return {
        bytes: bytes.reduce<number>((n, v) => n + (v ?? 0), 0),
        entries: lengths.reduce((n, v) => n + v, 0),
      }
    },
    close: () => client.disconnect(),
  }
}

/**
 * Kills the master of a document's stream while two typists (one per node) and a writer that
 * never comes back type at 50 entries/s each; two readers (one per node) watch.
 */
const failover = async (
  ctx: BenchContext,
  rc: RedisCluster,
  deployment: Deployment,
  label: string,
): Promise<Row> => {
  const [a, b] = deployment.nodes as [Deployment['nodes'][0], Deployment['nodes'][0]]
  const doc = `failover-${label.replace(/\W+/g, '-')}`
  const opts = { maxBackoffTime: 300 }
  const clients = [a, b, a, a, b].map((n) => connectClient(n.url, doc, opts))
  const [t1, t2, doomed, readerA, readerB] = clients as [
    TestClient,
    TestClient,
    TestClient,
    TestClient,
    TestClient,
  ]
  await Promise.all(clients.map((c) => c.synced(30_000)))
  const typists = [startTyping(t1, 't1', 20), startTyping(t2, 't2', 20)]
  const writer = startTyping(doomed, 'w', 20)
  try {
    await sleep(ctx.quick ? 1000 : 3000)
    const key = `${deployment.env.REDIS_PREFIX}:v1:{${doc}}:s`
    const master = await rc.masterOf(key)
    // What other clients saw of the doomed writer: acknowledged, delivered, then the writer goes.
    writer.stop()
    const seen = [...expectedEntries([writer])].filter(
      (e) => logOf(readerA).has(e) || logOf(readerB).has(e),
    )
    doomed.destroy()
    const typedAtKill = typists.map((t) => t.typed)
    const killed = performance.now()
    await rc.killMaster(master)
    ctx.log(`cluster: ${label}: killed master ${master.address}`)
    // Deliveries resume: each reader has an entry the typist on the other node typed after the kill.
    const resumed = until(
      () =>
        logOf(readerB).has(`t1:${typedAtKill[0]! + 1}`) &&
        logOf(readerA).has(`t2:${typedAtKill[1]! + 1}`),
      60_000,
    )
    await rc.waitForFailover()
    const failedOver = performance.now() - killed
    // Restarted at once, as an orchestrator restarts a crashed pod: it comes back as the new
    // master's replica (with REDIS_WAIT_REPLICAS=1 and one replica per master, appends to the
    // failed master's slots wait for it: the new master has no replica until then).
    await rc.restartNode(master)
    const rejoined = performance.now() - killed
    const resumeSinceKill = (await resumed) - killed
    await sleep(ctx.quick ? 1000 : 3000)
    for (const t of typists) t.stop()
    const stopped = performance.now()
    const expected = expectedEntries(typists)
    const live = [t1, t2, readerA, readerB]
    const convergedMs =
      (await until(() => live.every((c) => missingFrom(c, expected).length === 0), 60_000)) -
      stopped
    // Clients still missing entries when the wait gave up (name: how many).
    const named: [string, TestClient][] = [
      ['typist A', t1],
      ['typist B', t2],
      ['reader A', readerA],
      ['reader B', readerB],
    ]
    const behind = named
      .map(([name, c]) => [name, missingFrom(c, expected).length] as const)
      .filter(([, n]) => n > 0)
      .map(([name, n]) => `${name}: ${n}`)
    const fresh = connectClient(b.url, doc, opts)
    await fresh.synced(30_000)
    const final = logOf(fresh)
    const lostSeen = seen.filter((e) => !final.has(e)).length
    const lostTyped = [...expected].filter((e) => !final.has(e)).length
    const duplicates = fresh.doc.getArray<string>('log').length - final.size
    fresh.destroy()
    return {
      replication: label,
      'kill → failover done ms': fmt(failedOver, 0),
      'kill → old master back as replica ms': fmt(rejoined, 0),
      'kill → deliveries resumed ms': fmt(resumeSinceKill, 0),
      'typing stopped → all converged ms': Number.isNaN(convergedMs)
        ? `not in 60 s (${behind.join(', ')} missing)`
        : fmt(convergedMs, 0),
      'entries typed': expected.size + writer.typed,
      'doomed writer: seen by others': seen.length,
      'of those lost': lostSeen,
      'typists’ entries lost': lostTyped,
      duplicates,
    }
  } finally {
    for (const t of [...typists, writer]) t.stop()
    for (const c of clients) c.destroy()
  }
}

const scenario: Scenario = {
  name: 'cluster',
  title: 'Redis Cluster: 3 masters (+1 replica each) against 1 standalone Redis',
  run: async (ctx) => {
    await using rc = await startRedisCluster()
    const ceilings: Row[] = []
    const ceilingSteps: string[] = []
    const fanout: Row[] = []
    const many: Row[] = []
    const docCount = ctx.quick ? 200 : 1000
    const seconds = ctx.quick ? 2 : 10
    const fanoutRates = ctx.quick ? [100] : [100, 1000]
    const variants: [string, () => Promise<Deployment>][] = [
      ['1 standalone master', () => startCluster({ nodes: 2, env: nodeEnv })],
      ['3 masters', () => startOnRedisCluster(rc, { nodes: 2, env: nodeEnv })],
      [
        '3 masters, REDIS_WAIT_REPLICAS=1',
        () => startOnRedisCluster(rc, { nodes: 2, env: { ...nodeEnv, ...waitEnv } }),
      ],
    ]
    for (const [label, start] of variants) {
      ctx.log(`cluster: ${label}: S1 fan-out`)
      {
        await using d = await start()
        const { rows } = await measureFanout(ctx, d, fanoutRates)
        for (const r of rows) fanout.push({ Redis: label, ...r })
      }
      ctx.log(`cluster: ${label}: S4 ceiling`)
      {
        await using d = await start()
        const memory = streamMemory(d, rc)
        const { rows, ceiling, redisCpuUsPerUpdate, nodeCpuUsPerDelivery } = await measureCeiling(
          ctx,
          d,
        )
        const streams = await memory.read()
        memory.close()
        ceilings.push({
          Redis: label,
          'ceiling, delivered updates/s': fmt(ceiling, 0),
          'Redis CPU µs per update at the ceiling': fmt(redisCpuUsPerUpdate, 1),
          'node CPU µs per delivery at the ceiling': fmt(nodeCpuUsPerDelivery, 1),
          'stream memory per entry, B': fmt(streams.bytes / streams.entries, 0),
          'steps (offered/s: p99 ms)': rows
            .map((r) => `${String(r['offered updates/s'])}: ${String(r['p99 ms'])}`)
            .join(', '),
        })
        ceilingSteps.push(`**${label}**\n\n${table(rows)}`)
      }
      ctx.log(`cluster: ${label}: S2 with ${docCount} documents`)
      {
        await using d = await start()
        many.push({
          Redis: label,
          documents: docCount,
          ...(await measureManyDocs(ctx, d, docCount, seconds)),
        })
      }
      await rc.flushAll()
    }
    const failovers: Row[] = []
    for (const [label, env] of [
      ['asynchronous', {}],
      ['REDIS_WAIT_REPLICAS=1', waitEnv],
    ] as const) {
      await using d = await startOnRedisCluster(rc, { nodes: 2, env: { ...nodeEnv, ...env } })
      failovers.push(await failover(ctx, rc, d, label))
    }
    const masters = (await rc.masters()).length
    return [
      `A local Redis Cluster of ${masters} masters with one replica each (cluster-node-timeout 1500 ms, ` +
        'no persistence) on the same 2 cores as everything else, against one standalone Redis; ' +
        'two server nodes each time, no workers. Every process shares the two cores, so these ' +
        'numbers show what a cluster costs and what it changes, not what 3 machines would carry.',
      '',
      '**S4 ceiling** (50 documents × (1 writer + 2 readers); Redis CPU: all Redis processes of the ' +
        'passing step over the updates appended in it, replicas included):',
      '',
      table(ceilings),
      ...ceilingSteps,
      `**S1 fan-out** (1 writer, 3 readers, one document):`,
      '',
      table(fanout),
      `**S2** (${docCount} documents × 3 clients, 0.5 updates/s + 0.5 awareness/s each, ${seconds} s):`,
      '',
      table(many),
      '**Failover**: two typists (one per node) and a third writer type 50 entries/s each into one ' +
        'document; the third writer stops and leaves for good, then its stream’s master is killed ' +
        '(SIGKILL). Deliveries resumed: each reader holds an entry the typist on the other node ' +
        'typed after the kill. Lost: entries of the departed writer that another client had ' +
        'received before the kill, and typists’ entries, missing from a fresh client at the end.',
      '',
      table(failovers),
    ].join('\n')
  },
}
export default scenario
