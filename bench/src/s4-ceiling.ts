/**
 * S4: throughput ceiling. 50 documents, each with 1 writer and 2 readers spread over 2 nodes; the
 * total update rate doubles each step until p99 delivery latency exceeds 50 ms or a delivery is
 * missing. The ceiling is the last passing step's delivered updates per second.
 */
import { type Deployment, cpuSummary, redisCpu, startCluster } from './cluster.js'
import type { BenchContext, Scenario } from './framework.js'
import { pace, sleep } from './load.js'
import { Ledger, openPeers } from './peers.js'
import { fmt, summary, table, type Row } from './stats.js'

const DOCS = 50

/** The documents S4 writes (`doc-0`…): their stream keys are `<prefix>:v1:{doc-<i>}:s`. */
export const ceilingDocs = Array.from({ length: DOCS }, (_, i) => `doc-${i}`)

/**
 * Steps the total update rate up (doubling from 500, or 2 000 with --quick) on `deployment`'s first
 * two nodes until p99 delivery latency exceeds 50 ms or a delivery is missing. Returns the table
 * rows, the ceiling (the last passing step's delivered updates/s) and the Redis CPU per appended
 * update at that step (all Redis processes together).
 */
export const measureCeiling = async (
  ctx: BenchContext,
  deployment: Deployment,
): Promise<{
  rows: Row[]
  ceiling: number
  redisCpuUsPerUpdate: number
  nodeCpuUsPerDelivery: number
}> => {
  const ledger = new Ledger()
  const urls = deployment.nodes.map((n) => n.url)
  const writers = await openPeers(urls, ceilingDocs, 1, ledger)
  const readers = await openPeers([...urls].reverse(), ceilingDocs, 2, ledger)
  const write = (i: number) => writers.peers[i % writers.peers.length]?.write(2)
  await pace(500, ctx.quick ? 1 : 2, write) // warm-up
  await sleep(500)
  const rows: Row[] = []
  let ceiling = 0
  let redisCpuUsPerUpdate = NaN
  let nodeCpuUsPerDelivery = NaN
  const stepSeconds = ctx.quick ? 1 : 5
  try {
    for (let rate = ctx.quick ? 2000 : 500; rate <= 64_000; rate *= 2) {
      ledger.reset()
      const cpu = deployment.meter()
      const started = performance.now()
      const sent = await pace(rate, stepSeconds, write)
      const sendSeconds = (performance.now() - started) / 1000
      // Grace for the tail of the step; longer waits would hide a backlog.
      await sleep(1000)
      const used = cpu.read()
      const l = summary(ledger.latencies)
      const complete = ledger.delivered >= ledger.expected
      const passed = complete && l.p99 <= 50
      const deliveredPerSec = ledger.delivered / sendSeconds
      const perUpdate = (redisCpu(used) / sent) * 1e6
      if (passed) {
        ceiling = deliveredPerSec
        redisCpuUsPerUpdate = perUpdate
        const nodeCpu = Object.entries(used)
          .filter(([k]) => k.startsWith('node'))
          .reduce((n, [, v]) => n + v, 0)
        nodeCpuUsPerDelivery = (nodeCpu / ledger.delivered) * 1e6
      }
      rows.push({
        'offered updates/s': rate,
        'achieved updates/s': fmt(sent / sendSeconds, 0),
        'delivered/s': fmt(deliveredPerSec, 0),
        delivered: `${ledger.delivered}/${ledger.expected}`,
        'p50 ms': fmt(l.p50),
        'p99 ms': fmt(l.p99),
        result: passed ? 'pass' : complete ? 'p99 > 50 ms' : 'missing deliveries',
        'Redis CPU µs/update': fmt(perUpdate, 1),
        'CPU s': cpuSummary(used),
      })
      if (!passed) break
      await sleep(500)
    }
  } finally {
    writers.close()
    readers.close()
  }
  return { rows, ceiling, redisCpuUsPerUpdate, nodeCpuUsPerDelivery }
}

const scenario: Scenario = {
  name: 's4',
  title: 'Throughput ceiling: 50 documents × (1 writer + 2 readers), 2 nodes',
  run: async (ctx) => {
    await using cluster = await startCluster({ nodes: 2 })
    const { rows, ceiling } = await measureCeiling(ctx, cluster)
    ctx.shared.set('s4.ceiling', ceiling)
    return `${table(rows)}\nCeiling: **${fmt(ceiling, 0)} delivered updates/s** (each update delivered to 2 readers) before p99 > 50 ms or a missing delivery. Redis CPU per update: all Redis CPU of the step over the updates appended in it.\n`
  },
}
export default scenario
