/**
 * Node memory vs document size: N sockets joining one large document against N sockets joining a
 * small one, each case on a fresh node process. The document is appended to Redis directly (one
 * update, through the streams library: WebSocket message limits do not apply). All sockets join at
 * once; the node's RSS is polled every 10 ms during the joins (and its VmHWM read), then a full GC
 * is forced over the inspector and RSS and V8 heap are read. Goal: memory flat in document size.
 */
import * as Y from 'yjs'
import { encodeSyncStep2 } from '@streambed/protocol'
import type { BenchContext, Scenario } from './framework.js'
import {
  fetchMetrics,
  metricValue,
  mib,
  peakRssBytes,
  resetPeakRss,
  settledRss,
  textDocument,
  withProbedNode,
} from './memory-probe.js'
import { sleep } from './load.js'
import { Ledger, openPeers } from './peers.js'
import { rssBytes } from './proc.js'
import { fmt, table, type Row } from './stats.js'

const DOC = 'memory-doc'
const POLL_MS = 10
/** What infra/Dockerfile sets: a fixed mmap threshold, so large freed buffers go back to the OS. */
const MALLOC_TUNED = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072' }
/** What a y-websocket client with an empty document answers to the server's step 1. */
const EMPTY_STEP2 = encodeSyncStep2(Y.encodeStateAsUpdate(new Y.Doc()))

const sizeLabel = (bytes: number): string =>
  bytes >= 2 ** 20 ? `${bytes / 2 ** 20} MiB` : `${bytes / 1024} KiB`

interface Result {
  label: string
  malloc: string
  docBytes: number
  sockets: number
  opened: number
  failed: number
  synced: number
  syncBytes: number
  joinSeconds: number
  nodeCpu: number
  rssBefore: number
  heapBefore: number
  peakPolled: number
  samples: number
  maxGapMs: number
  peakHwm: number
  rssAfterGc: number
  rssAfterIdle: number
  heapAfterGc: number
  externalAfterGc: number
}

const measure = async (
  bytes: number,
  sockets: number,
  ctx: BenchContext,
  /** SYNC_THREAD_IDLE_MS: the default (10 s); 1 s in --quick runs. */
  threadIdleMs: number,
  malloc: Record<string, string> = {},
): Promise<Result> => {
  const env = { ...malloc, SYNC_THREAD_IDLE_MS: String(threadIdleMs) }
  return withProbedNode(env, async ({ cluster, node, pid, inspector, streams }) => {
    const update = textDocument(bytes)
    await streams.append(DOC, update, 'bench/0')

    await inspector.collectGarbage()
    const rssBefore = await settledRss(pid)
    const heapBefore = await inspector.heap()

    ctx.log(`memory: ${sockets} sockets join a ${sizeLabel(bytes)} document`)
    const hwmReset = resetPeakRss(pid)
    let peakPolled = rssBefore
    let samples = 0
    let maxGapMs = 0
    let lastPoll = performance.now()
    const poller = setInterval(() => {
      const now = performance.now()
      maxGapMs = Math.max(maxGapMs, now - lastPoll)
      lastPoll = now
      peakPolled = Math.max(peakPolled, rssBytes(pid))
      samples++
    }, POLL_MS)
    const meter = cluster.meter()
    const started = performance.now()
    const watchdog = new Promise<never>((_, reject) =>
      setTimeout(
        () => reject(new Error(`memory: ${sockets} joins not synced within 100 s`)),
        100_000,
      ).unref(),
    )
    const pool = await Promise.race([
      openPeers([node.url], [DOC], sockets, new Ledger()),
      watchdog,
    ]).finally(() => clearInterval(poller))
    try {
      const joinSeconds = (performance.now() - started) / 1000
      const nodeCpu = meter.read().node0 ?? NaN
      peakPolled = Math.max(peakPolled, rssBytes(pid))
      const peakHwm = hwmReset ? peakRssBytes(pid) : NaN
      for (const p of pool.peers) p.ws.send(EMPTY_STEP2)
      await sleep(500)
      const metrics = await fetchMetrics(node.httpUrl)
      await inspector.collectGarbage()
      const rssAfterGc = await settledRss(pid)
      const heapAfter = await inspector.heap()
      // A sync thread exits after SYNC_THREAD_IDLE_MS without work; its heap
      // holds the peak of the largest parse until then.
      await sleep(threadIdleMs + 1500)
      await inspector.collectGarbage()
      const rssAfterIdle = await settledRss(pid)
      return {
        label: sizeLabel(bytes),
        malloc: Object.keys(malloc).length > 0 ? 'tuned' : 'default',
        docBytes: update.length,
        sockets,
        opened: pool.peers.length,
        failed: pool.failed,
        synced: pool.peers.filter((p) => p.synced).length,
        syncBytes: metricValue(metrics, 'streambed_sync_bytes_total'),
        joinSeconds,
        nodeCpu,
        rssBefore,
        heapBefore: heapBefore.heapUsedBytes,
        peakPolled,
        samples,
        maxGapMs,
        peakHwm,
        rssAfterGc,
        rssAfterIdle,
        heapAfterGc: heapAfter.heapUsedBytes,
        externalAfterGc: heapAfter.externalBytes,
      }
    } finally {
      pool.close()
      await sleep(200)
    }
  })
}

const run = async (ctx: BenchContext): Promise<string> => {
  const sockets = ctx.quick ? 30 : 100
  const idleMs = ctx.quick ? 1000 : 10_000
  const largeBytes = (ctx.quick ? 2 : 10) * 2 ** 20
  const large = await measure(largeBytes, sockets, ctx, idleMs)
  // The tuned-malloc row only in full runs (--quick stays a smoke test under 2 minutes).
  const tuned = ctx.quick ? null : await measure(largeBytes, sockets, ctx, idleMs, MALLOC_TUNED)
  const small = await measure(1024, sockets, ctx, idleMs)
  const rows: Row[] = [large, tuned, small]
    .flatMap((r) => (r ? [r] : []))
    .map((r) => ({
      document: `${r.label} (${r.docBytes} bytes)`,
      'glibc malloc': r.malloc,
      'sockets: synced / opened (failed)': `${r.synced} / ${r.opened} (${r.failed})`,
      'step 2 bytes sent (node metric)': r.syncBytes,
      'all joined s': fmt(r.joinSeconds, 2),
      'node CPU s': fmt(r.nodeCpu),
      'RSS before joins MiB': mib(r.rssBefore),
      'peak RSS during joins MiB': mib(r.peakPolled),
      'peak (VmHWM) MiB': mib(r.peakHwm),
      'peak − before, per join MiB': fmt((r.peakHwm - r.rssBefore) / r.sockets / 2 ** 20),
      'RSS after GC MiB': mib(r.rssAfterGc),
      [`RSS after GC, ${idleMs / 1000} s idle MiB`]: mib(r.rssAfterIdle),
      'heap used after GC MiB': mib(r.heapAfterGc),
      'external after GC MiB': mib(r.externalAfterGc),
    }))
  const ratios = (r: Result) =>
    `after GC **${fmt(r.rssAfterGc / small.rssAfterGc)}**, once the sync thread retired (${idleMs / 1000} s idle, SYNC_THREAD_IDLE_MS) **${fmt(r.rssAfterIdle / small.rssAfterIdle)}**, peak during joins ${fmt(r.peakHwm / small.peakHwm)}, V8 heap after GC ${fmt(r.heapAfterGc / small.heapAfterGc)}`
  const notes = [
    `RSS ${large.label} ÷ ${small.label} (goal ≈ 1). Default malloc: ${ratios(large)}.` +
      (tuned
        ? ` Tuned malloc (${Object.entries(MALLOC_TUNED)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}, as in infra/Dockerfile): ${ratios(tuned)}.`
        : ''),
    `RSS polled every ${POLL_MS} ms from the load generator (${large.samples} / ${small.samples} samples, largest gap ${fmt(large.maxGapMs, 0)} / ${fmt(small.maxGapMs, 0)} ms: the load generator is busy receiving); VmHWM is the kernel's exact peak, reset before the joins.`,
    'One fresh node per row; the document is one update in the Redis stream (nothing compacted), one Y.Text item. All sockets send step 1 at once; joins that arrive together share one read and one answer (SYNC_THREADS=1: computed on the sync thread), sent to each socket in 64 KiB fragments as it drains. After joining, every socket answered with an empty step 2, then two full GCs were forced over the inspector.',
  ]
  return `${table(rows)}\n${notes.map((n) => `- ${n}`).join('\n')}\n`
}

const scenario: Scenario = { name: 'memory', title: 'Node memory vs document size', run }
export default scenario
