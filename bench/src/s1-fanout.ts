/** S1: one document, one writer and three readers on two nodes, 20 → 1 000 updates/s. */
import type { SpawnedProcessNode } from '@streambed/cli/testing'
import { type Deployment, cpuSummary, startCluster } from './cluster.js'
import { PACED_RATE } from './floors.js'
import type { BenchContext, Scenario } from './framework.js'
import { pace, sleep } from './load.js'
import { Ledger, openPeers } from './peers.js'
import { fmt, summary, table, type Row } from './stats.js'

/** Per-socket message limit for this scenario's nodes: above its highest rate. */
export const RATE_LIMIT = 5000

/**
 * One writer on the first node and three readers (one on the first node, two on the second) of one
 * document; for each rate, delivery latency against the Redis floor. Nodes must run with
 * WS_MAX_MESSAGES_PER_SECOND=RATE_LIMIT.
 */
export const measureFanout = async (
  ctx: BenchContext,
  deployment: Deployment,
  rates: readonly number[],
): Promise<{ rows: Row[]; p99ByRate: Map<number, number> }> => {
  const [a, b] = deployment.nodes as [SpawnedProcessNode, SpawnedProcessNode]
  const ledger = new Ledger()
  // The writer on node A; readers: one on A, two on B.
  const writer = await openPeers([a.url], ['doc'], 1, ledger)
  const readers = await openPeers([a.url, b.url, b.url], ['doc'], 3, ledger)
  const w = writer.peers[0]
  if (!w) throw new Error('writer did not connect')
  const rows: Row[] = []
  const p99ByRate = new Map<number, number>()
  const floor = ctx.floors.redis
  const socket = ctx.floors.socket
  try {
    await pace(100, 2, () => w.write(3)) // warm-up
    await sleep(300)
    for (const rate of rates) {
      ledger.reset()
      const cpu = deployment.meter()
      await pace(rate, ctx.quick ? 2 : 10, () => w.write(3))
      await sleep(500)
      const l = summary(ledger.latencies)
      p99ByRate.set(rate, l.p99)
      rows.push({
        'updates/s': rate,
        delivered: `${ledger.delivered}/${ledger.expected}`,
        'p50 ms': fmt(l.p50),
        'p99 ms': fmt(l.p99),
        'p50 ÷ Redis floor': fmt(l.p50 / floor.rttP50Ms),
        'p99 ÷ Redis floor': fmt(l.p99 / floor.rttP99Ms),
        'p50 ÷ floor sum': fmt(l.p50 / (floor.rttP50Ms + socket.pacedRttP50Ms)),
        'p99 ÷ floor sum': fmt(l.p99 / (floor.rttP99Ms + socket.pacedRttP99Ms)),
        'CPU s': cpuSummary(cpu.read()),
      })
    }
  } finally {
    writer.close()
    readers.close()
  }
  return { rows, p99ByRate }
}

const scenario: Scenario = {
  name: 's1',
  title: 'Fan-out latency: 1 writer, 3 readers, 2 nodes',
  run: async (ctx) => {
    // One writer socket sends up to 1000 updates/s: above the default per-socket limit
    // (WS_MAX_MESSAGES_PER_SECOND 300, bursts of 600; a typist sends under 20), which would hold
    // its messages back and, past 4 s of them, close it. The scenario measures the path, not that.
    await using cluster = await startCluster({
      nodes: 2,
      env: { WS_MAX_MESSAGES_PER_SECOND: String(RATE_LIMIT) },
    })
    const rates = ctx.quick ? [20, 1000] : [20, 100, 300, 1000]
    const { rows, p99ByRate } = await measureFanout(ctx, cluster, rates)
    const p99 = p99ByRate.get(ctx.quick ? 20 : 100)
    if (p99 !== undefined) ctx.shared.set('s1.p99', p99)
    const floor = ctx.floors.redis
    const { pacedRttP50Ms, pacedRttP99Ms } = ctx.floors.socket
    return (
      `${table(rows)}\nRedis floor: p50 ${fmt(floor.rttP50Ms, 3)} ms, p99 ${fmt(floor.rttP99Ms, 3)} ms. ` +
      `Goal: p99 ≤ 3 × floor p99. Floor sum: the Redis floor plus the bare uWebSockets.js echo ` +
      `round trip at ${PACED_RATE}/s (p50 ${fmt(floor.rttP50Ms + pacedRttP50Ms, 3)} ms, p99 ` +
      `${fmt(floor.rttP99Ms + pacedRttP99Ms, 3)} ms); issue 12's goal: p50 ≤ 2 × and p99 ≤ 3 × ` +
      `the floor sum. Nodes run with WS_MAX_MESSAGES_PER_SECOND=${RATE_LIMIT} (default 300 per ` +
      'socket).\n'
    )
  },
}
export default scenario
