/**
 * S4: throughput ceiling. 50 documents, each with 1 writer and 2 readers spread over 2 nodes; the
 * total update rate doubles each step until p99 delivery latency exceeds 50 ms or a delivery is
 * missing. The ceiling is the last passing step's delivered updates per second.
 */
import { startCluster, cpuSummary } from './cluster.js'
import type { Scenario } from './framework.js'
import { pace, sleep } from './load.js'
import { Ledger, openPeers } from './peers.js'
import { fmt, summary, table, type Row } from './stats.js'

const DOCS = 50

const scenario: Scenario = {
  name: 's4',
  title: 'Throughput ceiling: 50 documents × (1 writer + 2 readers), 2 nodes',
  run: async (ctx) => {
    await using cluster = await startCluster({ nodes: 2 })
    const ledger = new Ledger()
    const urls = cluster.nodes.map((n) => n.url)
    const docs = Array.from({ length: DOCS }, (_, i) => `doc-${i}`)
    const writers = await openPeers(urls, docs, 1, ledger)
    const readers = await openPeers([...urls].reverse(), docs, 2, ledger)
    const write = (i: number) => writers.peers[i % writers.peers.length]?.write(2)
    await pace(500, ctx.quick ? 1 : 2, write) // warm-up
    await sleep(500)
    const rows: Row[] = []
    let ceiling = 0
    const stepSeconds = ctx.quick ? 1 : 5
    for (let rate = ctx.quick ? 2000 : 500; rate <= 64_000; rate *= 2) {
      ledger.reset()
      const cpu = cluster.meter()
      const started = performance.now()
      const sent = await pace(rate, stepSeconds, write)
      const sendSeconds = (performance.now() - started) / 1000
      // Grace for the tail of the step; longer waits would hide a backlog.
      await sleep(1000)
      const l = summary(ledger.latencies)
      const complete = ledger.delivered >= ledger.expected
      const passed = complete && l.p99 <= 50
      const deliveredPerSec = ledger.delivered / sendSeconds
      if (passed) ceiling = deliveredPerSec
      rows.push({
        'offered updates/s': rate,
        'achieved updates/s': fmt(sent / sendSeconds, 0),
        'delivered/s': fmt(deliveredPerSec, 0),
        delivered: `${ledger.delivered}/${ledger.expected}`,
        'p50 ms': fmt(l.p50),
        'p99 ms': fmt(l.p99),
        result: passed ? 'pass' : complete ? 'p99 > 50 ms' : 'missing deliveries',
        'CPU s': cpuSummary(cpu.read()),
      })
      if (!passed) break
      await sleep(500)
    }
    writers.close()
    readers.close()
    ctx.shared.set('s4.ceiling', ceiling)
    return `${table(rows)}\nCeiling: **${fmt(ceiling, 0)} delivered updates/s** (each update delivered to 2 readers) before p99 > 50 ms or a missing delivery.\n`
  },
}
export default scenario
