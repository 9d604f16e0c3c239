/** S1: one document, one writer and three readers on two nodes, 20 → 1 000 updates/s. */
import { startCluster, cpuSummary } from './cluster.js'
import type { Scenario } from './framework.js'
import { pace, sleep } from './load.js'
import { Ledger, openPeers } from './peers.js'
import { fmt, summary, table, type Row } from './stats.js'

/** Per-socket message limit for this scenario's nodes: above its highest rate. */
const RATE_LIMIT = 5000

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
    const [a, b] = cluster.nodes as [(typeof cluster.nodes)[0], (typeof cluster.nodes)[0]]
    const ledger = new Ledger()
    // The writer on node A; readers: one on A, two on B.
    const writer = await openPeers([a.url], ['doc'], 1, ledger)
    const readers = await openPeers([a.url, b.url, b.url], ['doc'], 3, ledger)
    const w = writer.peers[0]
    if (!w) throw new Error('writer did not connect')
    await pace(100, 2, () => w.write(3)) // warm-up
    await sleep(300)
    const rows: Row[] = []
    const floor = ctx.floors.redis
    for (const rate of ctx.quick ? [20, 1000] : [20, 100, 300, 1000]) {
      ledger.reset()
      const cpu = cluster.meter()
      await pace(rate, ctx.quick ? 2 : 10, () => w.write(3))
      await sleep(500)
      const l = summary(ledger.latencies)
      if (rate === 100 || (ctx.quick && rate === 20)) ctx.shared.set('s1.p99', l.p99)
      rows.push({
        'updates/s': rate,
        delivered: `${ledger.delivered}/${ledger.expected}`,
        'p50 ms': fmt(l.p50),
        'p99 ms': fmt(l.p99),
        'p50 ÷ Redis floor': fmt(l.p50 / floor.rttP50Ms),
        'p99 ÷ Redis floor': fmt(l.p99 / floor.rttP99Ms),
        'CPU s': cpuSummary(cpu.read()),
      })
    }
    writer.close()
    readers.close()
    return `${table(rows)}\nRedis floor: p50 ${fmt(floor.rttP50Ms, 3)} ms, p99 ${fmt(floor.rttP99Ms, 3)} ms. Goal: p99 ≤ 3 × floor p99. Nodes run with WS_MAX_MESSAGES_PER_SECOND=${RATE_LIMIT} (default 300 per socket).\n`
  },
}
export default scenario
