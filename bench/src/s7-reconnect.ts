/**
 * S7 — reconnect storm. Two server nodes; many raw peers synced on a set of documents, and a few
 * "unaffected" documents, each with one writer sending 10 updates/s and two readers on other
 * sockets (round robin over the nodes, so most deliveries cross nodes). Phase 1: steady state,
 * delivery latency on the unaffected documents. Phase 2: the storm peers' TCP connections are
 * destroyed at once (a dropped network) and every peer reconnects, spread evenly over a window,
 * each syncing again (step 1 → step 2): time until all are synced, failures, the unaffected
 * documents' latency meanwhile, CPU seconds per process.
 */
import * as Y from 'yjs'
import WebSocket from 'ws'
import { Redis } from 'ioredis'
import { decodeMessage, encodeSyncStep1, mergeAll } from '@streambed/protocol'
import { createDocStreams, createKeys } from '@streambed/streams'
import { meterAll, startCluster } from './cluster.js'
import type { Scenario } from './framework.js'
import { Ledger, type Peer, openPeers } from './peers.js'
import { sleep } from './load.js'
import { fmt, percentile, summary, table, type Row } from './stats.js'
import { typingTrace } from './traces.js'

const STEP1 = encodeSyncStep1(Y.encodeStateVector(new Y.Doc()))

export interface ReconnectResult {
  readonly sockets: WebSocket[]
  /** Per synced socket: ms from `since` until its sync step 2 arrived. */
  readonly syncedAfterMs: number[]
  /** Per synced socket: ms from creating the socket until its sync step 2 arrived. */
  readonly connectToSyncMs: number[]
  /** When the last socket was created, ms after `since`. */
  readonly lastStartMs: number
  /** Sockets that failed: why → how many (`error`, `closed <code>`, `timeout`). */
  readonly failures: Record<string, number>
}

/**
 * Opens one socket per target, spread evenly over `spreadMs` (target i starts at i/n of it), each
 * sending sync step 1 with an empty state vector as soon as it is open; resolves when every socket
 * synced or failed, or `timeoutMs` after the last one started (the rest count as timed out).
 */
export const reconnectOverTime = async (
  targets: readonly { url: string; doc: string }[],
  opts: { spreadMs: number; timeoutMs: number; since: number },
): Promise<ReconnectResult> => {
  const sockets: WebSocket[] = []
  const syncedAfterMs: number[] = []
  const connectToSyncMs: number[] = []
  const failures: Record<string, number> = {}
  let settled = 0
  const open = (i: number, target: { url: string; doc: string }) => {
    const started = performance.now()
    const ws = new WebSocket(`${target.url}/${target.doc}`, {
      localAddress: `127.0.0.${1 + (i % 8)}`,
      perMessageDeflate: false,
    })
    ws.binaryType = 'arraybuffer'
    sockets.push(ws)
    let done = false
    const fail = (why: string) => {
      if (done) return
      done = true
      settled++
      failures[why] = (failures[why] ?? 0) + 1
    }
    ws.on('open', () => ws.send(STEP1))
    ws.on('message', (data: ArrayBuffer) => {
      if (done || decodeMessage(new Uint8Array(data)).kind !== 'sync-step2') return
      done = true
      settled++
      const now = performance.now()
      syncedAfterMs.push(now - opts.since)
      connectToSyncMs.push(now - started)
    })
    ws.on('error', () => fail('error'))
    ws.on('close', (code) => fail(`closed ${code}`))
  }
  const start = performance.now()
  let next = 0
  while (next < targets.length) {
    const due = Math.min(
      targets.length,
      Math.floor(((performance.now() - start) / opts.spreadMs) * targets.length) + 1,
    )
    for (; next < due; next++) open(next, targets[next] as { url: string; doc: string })
    await sleep(2)
  }
  const lastStartMs = performance.now() - opts.since
  const deadline = performance.now() + opts.timeoutMs
  while (settled < targets.length && performance.now() < deadline) await sleep(10)
  if (settled < targets.length) failures.timeout = targets.length - settled
  return { sockets, syncedAfterMs, connectToSyncMs, lastStartMs, failures }
}

/** Deterministic Fisher–Yates shuffle: reconnects of one document's peers spread over the window. */
const shuffled = <T>(items: readonly T[], seed = 1): T[] => {
  const out = [...items]
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[out[i], out[j]] = [out[j] as T, out[i] as T]
  }
  return out
}

/** Lines a node logged at warn (40) or above since `from`. */
const warnings = (output: readonly string[], from: number) =>
  output.slice(from).filter((l) => /"level":(40|50|60)/.test(l)).length

const scenario: Scenario = {
  name: 's7',
  title: 'Reconnect storm',
  run: async (ctx) => {
    const stormPeers = ctx.quick ? 1000 : 5000
    const perDoc = 10
    const spreadMs = ctx.quick ? 3000 : 10_000
    const steadyMs = ctx.quick ? 2000 : 10_000
    const unaffectedDocs = 20
    const writeRate = 10

    await using cluster = await startCluster({ nodes: 2 })
    const urls = cluster.nodes.map((n) => n.url)
    const redis = new Redis(cluster.redis.url)
    const stopWriters: (() => void)[] = []
    const sockets: { close(): void }[] = []
    try {
      // Every storm document has content: one update holding most of a typing session plus its
      // last 9 edits as separate entries (no worker runs, so each sync reads and merges 10 entries).
      const trace = typingTrace(2000)
      const seed = [mergeAll(trace.slice(0, -9)), ...trace.slice(-9)]
      const docBytes = mergeAll(seed).length
      const streams = createDocStreams({ redis, keys: createKeys(cluster.prefix), queueShards: 8 })
      const stormDocs = Array.from({ length: stormPeers / perDoc }, (_, i) => `storm-${i}`)
      ctx.log(`s7: seeding ${stormDocs.length} documents`)
      for (let i = 0; i < stormDocs.length; i += 50) {
        await Promise.all(
          stormDocs.slice(i, i + 50).flatMap((d) => seed.map((u) => streams.append(d, u, 'b/0'))),
        )
      }

      ctx.log(`s7: opening ${unaffectedDocs * 3} unaffected and ${stormPeers} storm peers`)
      const ledger = new Ledger()
      const quiet = await openPeers(
        urls,
        Array.from({ length: unaffectedDocs }, (_, i) => `unaffected-${i}`),
        3,
        ledger,
      )
      sockets.push(quiet)
      const storm = await openPeers(urls, stormDocs, perDoc, new Ledger())
      sockets.push(storm)
      const unsynced = (peers: Peer[]) => peers.filter((p) => !p.synced).length
      if (quiet.failed + unsynced(quiet.peers) > 0)
        throw new Error(
          `unaffected peers: ${quiet.failed} failed, ${unsynced(quiet.peers)} unsynced`,
        )
      const initialFailed = storm.failed + unsynced(storm.peers)

      // One writer per unaffected document, 10 updates/s, writers staggered over the interval.
      const writers = [...new Map(quiet.peers.map((p) => [p.doc, p])).values()]
      const readersPerDoc = 2
      let sent = 0
      writers.forEach((w, i) => {
        const start = setTimeout(
          () => {
            const timer = setInterval(() => {
              w.write(readersPerDoc)
              sent++
            }, 1000 / writeRate)
            stopWriters.push(() => clearInterval(timer))
          },
          (i * 1000) / writeRate / writers.length,
        )
        stopWriters.push(() => clearTimeout(start))
      })
      await sleep(1000) // warm-up

      const measure = async (fn: () => Promise<void>) => {
        ledger.reset()
        const sentBefore = sent
        const readCpu = meterAll(cluster)
        const logFrom = cluster.nodes.map((n) => n.proc.output.length)
        const started = performance.now()
        await fn()
        const seconds = (performance.now() - started) / 1000
        return {
          seconds,
          latencies: [...ledger.latencies],
          delivered: ledger.delivered,
          expected: ledger.expected,
          sent: sent - sentBefore,
          cpu: readCpu(),
          warnings: cluster.nodes.reduce(
            (n, node, i) => n + warnings(node.proc.output, logFrom[i] ?? 0),
            0,
          ),
        }
      }

      ctx.log(`s7: steady state, ${steadyMs / 1000} s`)
      const steady = await measure(() => sleep(steadyMs))

      ctx.log(`s7: dropping ${storm.peers.length} sockets, reconnecting over ${spreadMs / 1000} s`)
      let result: ReconnectResult | null = null
      const stormPhase = await measure(async () => {
        const since = performance.now()
        for (const p of storm.peers) p.ws.terminate()
        result = await reconnectOverTime(
          shuffled(
            storm.peers.map((p) => ({
              url: p.ws.url.slice(0, p.ws.url.lastIndexOf('/')),
              doc: p.doc,
            })),
          ),
          { spreadMs, timeoutMs: 60_000, since },
        )
        sockets.push({ close: () => result?.sockets.forEach((s) => s.close()) })
      })
      for (const stop of stopWriters) stop()
      // Deliveries still in flight when the phase ended (latencies reach seconds in the storm):
      // with the writers stopped, wait and count again, so a shortfall means a loss.
      const settleMs = ctx.quick ? 1000 : 3000
      await sleep(settleMs)
      const settled = { delivered: ledger.delivered, expected: ledger.expected }
      const r = result as ReconnectResult | null
      if (!r) throw new Error('the storm phase did not run')

      const s = summary(steady.latencies)
      const phaseRow = (phase: string, m: typeof steady): Row => {
        const l = summary(m.latencies)
        return {
          phase,
          s: fmt(m.seconds, 1),
          'updates sent': m.sent,
          'delivered / expected': `${m.delivered}/${m.expected}`,
          'p50 ms': fmt(l.p50),
          'p99 ms': fmt(l.p99),
          'max ms': fmt(l.max),
          'p50 ÷ steady': fmt(l.p50 / s.p50),
          'p99 ÷ steady': fmt(l.p99 / s.p99),
          'p50 ÷ Redis floor p50': fmt(l.p50 / ctx.floors.redis.rttP50Ms),
          'node warnings': m.warnings,
        }
      }
      const cpuRow = (phase: string, m: typeof steady): Row => ({
        phase,
        s: fmt(m.seconds, 1),
        ...Object.fromEntries(Object.entries(m.cpu).map(([k, v]) => [`${k} CPU s`, fmt(v)])),
      })
      const synced = r.syncedAfterMs.length
      const failed = Object.entries(r.failures)
      const allSynced = synced === storm.peers.length
      return [
        `2 server nodes; ${stormPeers} storm peers on ${stormDocs.length} documents (${perDoc} each, ` +
          `${seed.length} stream entries, ${docBytes} bytes per document, no worker); ` +
          `${unaffectedDocs} unaffected documents with 1 writer (${writeRate} updates/s) and ` +
          `${readersPerDoc} readers each, sockets round robin over the nodes. ` +
          `Initial open: ${initialFailed} storm peers failed or unsynced. Unaffected documents, ` +
          `counted again ${settleMs / 1000} s after the writers stopped: ${settled.delivered}/${settled.expected} ` +
          'delivered (the storm row counts only what arrived before its phase ended).',
        '',
        '**Unaffected documents**: delivery latency, writer send → reader receive (steady: ' +
          `${steadyMs / 1000} s; storm: from the drop until every storm peer synced again).`,
        '',
        table([phaseRow('steady', steady), phaseRow('storm', stormPhase)]),
        `**Storm**: ${storm.peers.length} sockets destroyed at once (ws.terminate), then reopened ` +
          `spread evenly over ${spreadMs / 1000} s in shuffled order, each sending sync step 1 ` +
          'until the server’s step 2.',
        '',
        table([
          {
            sockets: storm.peers.length,
            'spread s': fmt(spreadMs / 1000, 0),
            synced: `${synced}/${storm.peers.length}`,
            'all synced after s (from the drop)': allSynced
              ? fmt(Math.max(...r.syncedAfterMs) / 1000)
              : 'not all',
            'after the last reopen ms': allSynced
              ? fmt(Math.max(...r.syncedAfterMs) - r.lastStartMs, 0)
              : 'n/a',
            'open → synced p50 ms': fmt(percentile(r.connectToSyncMs, 50)),
            'open → synced p99 ms': fmt(percentile(r.connectToSyncMs, 99)),
            'open → synced max ms': fmt(percentile(r.connectToSyncMs, 100)),
            failed: failed.length === 0 ? 0 : failed.map(([k, v]) => `${v} ${k}`).join(', '),
          },
        ]),
        '**CPU seconds per process** (bench: this load generator; other: every other process on ' +
          'the machine; all share the same cores).',
        '',
        table([cpuRow('steady', steady), cpuRow('storm', stormPhase)]),
      ].join('\n')
    } finally {
      for (const stop of stopWriters) stop()
      for (const s of sockets) s.close()
      redis.disconnect()
    }
  },
}

export default scenario
