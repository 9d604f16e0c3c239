/**
 * S2: many documents, 3 clients each on 2 nodes, every client sending 0.5 updates/s and 0.5
 * awareness updates/s. Delivery p99 against S1, and Redis CPU per update.
 */
import { encodeAwarenessMessage, encodeAwarenessUpdate } from '@streambed/protocol'
import { type Deployment, cpuSummary, redisCpu, startCluster } from './cluster.js'
import type { BenchContext, Scenario } from './framework.js'
import { pace, sleep } from './load.js'
import { fdUsage } from './memory-probe.js'
import { Ledger, openPeers } from './peers.js'
import { fmt, summary, table, type Row } from './stats.js'

/**
 * `docCount` documents with 3 clients each on `deployment`'s nodes, every client sending 0.5
 * updates/s and 0.5 awareness updates/s for `seconds`: delivery latency and CPU.
 */
export const measureManyDocs = async (
  ctx: BenchContext,
  deployment: Deployment,
  docCount: number,
  seconds: number,
): Promise<Row> => {
  const ledger = new Ledger()
  const docs = Array.from({ length: docCount }, (_, i) => `doc-${i}`)
  ctx.log(`s2: opening ${docCount * 3} sockets`)
  const { peers, failed, close } = await openPeers(
    deployment.nodes.map((n) => n.url),
    docs,
    3,
    ledger,
  )
  try {
    const clocks = peers.map(() => 0)
    const ids = peers.map((_, i) => 1_000_000 + i)
    const awareness = (i: number) => {
      const peer = peers[i % peers.length]
      if (!peer) return
      const entry = {
        clientId: ids[i % peers.length] as number,
        clock: ++clocks[i % peers.length]!,
        state: JSON.stringify({ cursor: i }),
      }
      peer.ws.send(encodeAwarenessMessage(encodeAwarenessUpdate([entry])))
    }
    // Warm-up, then measure.
    await pace(peers.length * 0.5, ctx.quick ? 1 : 2, (i) => peers[i % peers.length]?.write(2))
    await sleep(500)
    ledger.reset()
    const cpu = deployment.meter()
    const started = performance.now()
    const perSecond = peers.length * 0.5
    await Promise.all([
      pace(perSecond, seconds, (i) => peers[(i * 7919) % peers.length]?.write(2)),
      pace(perSecond, seconds, (i) => awareness((i * 104729) % peers.length)),
    ])
    await sleep(1000)
    const elapsed = (performance.now() - started) / 1000
    const used = cpu.read()
    const updates = ledger.expected / 2
    const l = summary(ledger.latencies)
    const s1 = ctx.shared.get('s1.p99')
    return {
      sockets: `${peers.length}${failed ? ` (${failed} failed)` : ''}`,
      'updates/s': fmt(updates / seconds, 0),
      delivered: `${ledger.delivered}/${ledger.expected}`,
      'p50 ms': fmt(l.p50),
      'p99 ms': fmt(l.p99),
      'p99 ÷ S1 p99': s1 ? fmt(l.p99 / s1) : 'S1 not run',
      'p99 ÷ Redis floor': fmt(l.p99 / ctx.floors.redis.rttP99Ms),
      'Redis CPU µs/update': fmt((redisCpu(used) / (updates * 2)) * 1e6, 1),
      'CPU s': cpuSummary(used),
      'wall s': fmt(elapsed, 1),
    }
  } finally {
    close()
  }
}

const scenario: Scenario = {
  name: 's2',
  title: 'Many documents: 3 clients each, 0.5 updates/s + 0.5 awareness/s per client',
  run: async (ctx) => {
    const rows: Row[] = []
    const seconds = ctx.quick ? 2 : 20
    for (const asked of ctx.quick ? [100, 1000] : [100, 1000, 10_000]) {
      // The load generator holds every socket: its open-file limit caps the count (20 000 on the
      // recorded machine, which cannot raise it: no CAP_SYS_RESOURCE).
      const self = fdUsage(process.pid)
      const docCount = Math.min(
        asked,
        Math.floor((self.limit - self.open - 1000) / 3 / 1000) * 1000,
      )
      if (docCount < asked)
        ctx.log(
          `s2: ${asked} documents need ${asked * 3} sockets; open-file limit ${self.limit}: measuring ${docCount}`,
        )
      await using cluster = await startCluster({ nodes: 2 })
      const row = await measureManyDocs(ctx, cluster, docCount, seconds)
      rows.push({
        documents:
          docCount < asked
            ? `${docCount} (${asked} not reachable: open-file limit ${self.limit} of the load generator)`
            : docCount,
        ...row,
      })
    }
    return `${table(rows)}\nRedis CPU per update counts both the update and the awareness message (2 per client and 2 s). Goal: p99 at 10 k documents ≤ 2 × S1 p99.\n`
  },
}
export default scenario
