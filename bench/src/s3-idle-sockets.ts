/**
 * S3 — idle sockets: the RSS a server node gains per synced, idle connection, against the bare
 * uWebSockets.js floor measured in the same run. One fresh node per N; 10 sockets per document;
 * each socket syncs (step 1 → step 2, then answers the node's step 1 with an empty step 2, as a
 * y-websocket client with nothing to add does) and then stays idle for 3 s.
 */
import { readFileSync } from 'node:fs'
import * as Y from 'yjs'
import { encodeSyncStep2 } from '@streambed/protocol'
import type { BenchContext, Scenario } from './framework.js'
import {
  fdUsage,
  fetchMetrics,
  kib,
  metricValue,
  mib,
  settledRss,
  startProbedNode,
  waitForIdleNode,
} from './memory-probe.js'
import { sleep } from './load.js'
import { Ledger, openPeers } from './peers.js'
import { rssBytes } from './proc.js'
import { fmt, table, type Row } from './stats.js'

const PER_DOC = 10
const IDLE_MS = 3000
/** File descriptors kept free in each process for Redis, the inspector, logs and so on. */
const FD_MARGIN = 200
/** openMany spreads sockets over this many loopback source addresses (see sockets.ts). */
const SOURCE_ADDRESSES = 8
const GOAL_KIB_ABOVE_FLOOR = 2

/** What a y-websocket client with an empty document answers to the server's step 1. */
const EMPTY_STEP2 = encodeSyncStep2(Y.encodeStateAsUpdate(new Y.Doc()))

const ephemeralPorts = (): number => {
  const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
    .trim()
    .split(/\s+/)
    .map(Number)
  return (hi ?? 0) - (lo ?? 0) + 1
}

/**
 * How many sockets can be open at once: each takes a descriptor in the load generator and one in
 * the node, and a local port on one of the source addresses. Checked up front because a node out
 * of descriptors stops accepting without failing the client's handshake (which would then hang).
 */
const capacity = (nodePid: number): { sockets: number; limitedBy: string } => {
  const self = fdUsage(process.pid)
  const node = fdUsage(nodePid)
  const limits = [
    {
      sockets: self.limit - self.open - FD_MARGIN,
      limitedBy: `open-file limit ${self.limit} of the load generator`,
    },
    {
      sockets: node.limit - node.open - FD_MARGIN,
      limitedBy: `open-file limit ${node.limit} of the node`,
    },
    {
      sockets: ephemeralPorts() * SOURCE_ADDRESSES - 1000,
      limitedBy: `ephemeral ports (${ephemeralPorts()} × ${SOURCE_ADDRESSES} addresses)`,
    },
  ]
  return limits.reduce((a, b) => (b.sockets < a.sockets ? b : a))
}

interface Result {
  asked: number
  target: number
  limitedBy: string | null
  opened: number
  failed: number
  synced: number
  stillOpen: number
  nodeConnections: number
  appended: number
  openSeconds: number
  rssBefore: number
  rssAfter: number
  rssAfterGc: number
  heapBefore: number
  heapAfterGc: number
  externalBefore: number
  externalAfterGc: number
  loadGenBefore: number
  loadGenAfter: number
  cpuOpen: Record<string, number>
  cpuIdle: Record<string, number>
}

const measure = async (asked: number, ctx: BenchContext): Promise<Result> => {
  // Documents of the warm-up sockets are dropped at once instead of after the default 5 s.
  const { cluster, node, pid, inspector, stop } = await startProbedNode({ DOC_LINGER_MS: '0' })
  try {
    const room = capacity(pid)
    const target = Math.min(asked, Math.floor(room.sockets / 1000) * 1000)
    const limitedBy = target < asked ? room.limitedBy : null
    if (limitedBy)
      ctx.log(`s3: ${asked} sockets cannot be open at once (${limitedBy}); measuring ${target}`)

    // Warm-up: code paths compiled and pools allocated once are not per-connection costs.
    const warm = await openPeers(
      [node.url],
      Array.from({ length: 20 }, (_, i) => `warm-${i}`),
      PER_DOC,
      new Ledger(),
    )
    warm.close()
    await waitForIdleNode(node.httpUrl)
    await inspector.collectGarbage()
    const rssBefore = await settledRss(pid)
    const heapBefore = await inspector.heap()
    const loadGenBefore = rssBytes(process.pid)

    ctx.log(`s3: opening ${target} sockets on ${target / PER_DOC} documents`)
    const meter = cluster.meter()
    const started = performance.now()
    const docs = Array.from({ length: Math.ceil(target / PER_DOC) }, (_, i) => `idle-${i}`)
    const watchdog = new Promise<never>((_, reject) =>
      setTimeout(
        () => reject(new Error(`s3: ${target} sockets not open and synced within 150 s`)),
        150_000,
      ).unref(),
    )
    const pool = await Promise.race([openPeers([node.url], docs, PER_DOC, new Ledger()), watchdog])
    try {
      const openSeconds = (performance.now() - started) / 1000
      for (const p of pool.peers) p.ws.send(EMPTY_STEP2)
      const cpuOpen = meter.read()
      await sleep(IDLE_MS)
      const cpuAll = meter.read()
      const rssAfter = rssBytes(pid)
      const loadGenAfter = rssBytes(process.pid)
      const metrics = await fetchMetrics(node.httpUrl)
      await inspector.collectGarbage()
      const rssAfterGc = await settledRss(pid)
      const heapAfter = await inspector.heap()
      return {
        asked,
        target,
        limitedBy,
        opened: pool.peers.length,
        failed: pool.failed,
        synced: pool.peers.filter((p) => p.synced).length,
        stillOpen: pool.peers.filter((p) => p.ws.readyState === p.ws.OPEN).length,
        nodeConnections: metricValue(metrics, 'streambed_connections'),
        appended: metricValue(metrics, 'streambed_updates_appended_total'),
        openSeconds,
        rssBefore,
        rssAfter,
        rssAfterGc,
        heapBefore: heapBefore.heapUsedBytes,
        heapAfterGc: heapAfter.heapUsedBytes,
        externalBefore: heapBefore.externalBytes,
        externalAfterGc: heapAfter.externalBytes,
        loadGenBefore,
        loadGenAfter,
        cpuOpen,
        cpuIdle: Object.fromEntries(
          Object.entries(cpuAll).map(([k, v]) => [k, v - (cpuOpen[k] ?? NaN)]),
        ),
      }
    } finally {
      pool.close()
      await sleep(500)
    }
  } finally {
    await stop()
  }
}

const run = async (ctx: BenchContext): Promise<string> => {
  const floor = ctx.floors.socket.rssPerIdleSocketBytes
  const results: Result[] = []
  for (const n of ctx.quick ? [2000] : [10_000, 50_000]) results.push(await measure(n, ctx))

  const goal = (perSocket: number) =>
    `${kib(perSocket - floor)} ${perSocket - floor <= GOAL_KIB_ABOVE_FLOOR * 1024 ? '✓' : '✗'}`
  const memory: Row[] = results.map((r) => {
    const idle = (r.rssAfter - r.rssBefore) / r.opened
    const collected = (r.rssAfterGc - r.rssBefore) / r.opened
    return {
      sockets: r.limitedBy ? `${r.target} (${r.asked} not reachable: ${r.limitedBy})` : r.target,
      'opened (failed)': `${r.opened} (${r.failed})`,
      'synced / open after 3 s / node count': `${r.synced} / ${r.stillOpen} / ${r.nodeConnections}`,
      'node RSS before → after MiB': `${mib(r.rssBefore)} → ${mib(r.rssAfter)}`,
      'RSS / socket KiB': kib(idle),
      'bare uWS KiB': kib(floor),
      'above bare KiB (goal ≤ 2)': goal(idle),
      '÷ bare': fmt(idle / floor),
      'after full GC: RSS / socket KiB': kib(collected),
      'after GC: above bare KiB': goal(collected),
    }
  })
  const breakdown: Row[] = results.map((r) => ({
    sockets: r.opened,
    'V8 heap used / socket (after GC) KiB': kib((r.heapAfterGc - r.heapBefore) / r.opened),
    'external / socket (after GC) KiB': kib((r.externalAfterGc - r.externalBefore) / r.opened),
    'open + sync s': fmt(r.openSeconds, 1),
    'node CPU s (open + sync)': fmt(r.cpuOpen.node0 ?? NaN),
    'node CPU s (3 s idle)': fmt(r.cpuIdle.node0 ?? NaN),
    'Redis CPU s (open + sync)': fmt(r.cpuOpen.redis ?? NaN),
    'load generator RSS MiB (before → after)': `${mib(r.loadGenBefore)} → ${mib(r.loadGenAfter)}`,
  }))
  const notes = [
    `One fresh node per row (DOC_LINGER_MS=0), warmed up with 200 sockets that were closed again; RSS "before" is read after a full GC.`,
    `${PER_DOC} sockets per document; every socket sent sync step 1, got step 2 and answered the node's step 1 with an empty step 2 (updates appended by the node: ${results.map((r) => r.appended).join(' / ')}). "After" is read ${IDLE_MS / 1000} s later without forcing a GC; the second table also shows it after two forced full GCs (inspector).`,
    'The bare uWS floor is the echo server of the floors table: no per-connection JavaScript state at all.',
  ]
  return `${table(memory)}\n${table(breakdown)}\n${notes.map((n) => `- ${n}`).join('\n')}\n`
}

const scenario: Scenario = { name: 's3', title: 'Idle sockets: node memory per connection', run }
export default scenario
