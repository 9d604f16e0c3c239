/**
 * S6 — compaction throughput, snapshot size and time to durable, with W worker processes on fs
 * storage; then the small documents once more on each backend (fs, Postgres, S3 on s3rver) with and
 * without group commit (WORKER_BATCH_SIZE 1 against the default).
 *
 * Throughput: W workers start and compact a few warm-up documents, are paused (SIGSTOP) while a
 * backlog of dirty documents is appended, and resumed together; we time from the resume until every
 * stream key is gone (MIN_MESSAGE_LIFETIME_MS=0: stored, trimmed, deleted). So the drain measures
 * warm workers, not process start-up, TypeScript loading or the merge thread's start.
 * Time to durable: with the workers running and idle, the same kind of documents arrive as live
 * traffic; for each, from the acknowledgement of its last append until storage holds a watermark at
 * or above that entry's id (polled with the storage library). Snapshot size: every stored state
 * read back and compared with encodeStateAsUpdate of a Y.Doc built from the same updates.
 * Floor: the merge + fs store of the same documents in this process, one after another (as in
 * compaction.ts), and the same with the update-log archive a worker also writes.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { createFsStorage, type DocStorage } from '@streambed/storage'
import { type DocStreams, type Keys, createDocStreams, createKeys } from '@streambed/streams'
import { snapshot } from '@streambed/worker'
import { type BackendName, backendLabel, startBackend } from './backends.js'
import { type Cluster, meterAll, startCluster } from './cluster.js'
import type { BenchContext, Scenario } from './framework.js'
import { sleep } from './load.js'
import { fmt, percentile, table, type Row } from './stats.js'
import {
  appendBacklog,
  largeDocUpdates,
  probeDurability,
  referenceState,
  smallDocUpdates,
  totalBytes,
  writeLive,
} from './s6-workload.js'

/** Worker settings: production-like debounce; streams deleted as soon as stored (to see drains). */
const settings = {
  COMPACT_IDLE_MS: '500',
  COMPACT_INTERVAL_MS: '5000',
  MIN_MESSAGE_LIFETIME_MS: '0',
}
const idleMs = Number(settings.COMPACT_IDLE_MS)
const pollMs = 20
const MB = 1024 * 1024

interface Doc {
  readonly name: string
  readonly updates: readonly Uint8Array[]
}

interface Workload {
  readonly label: string
  /** Compacted before the measurement, so the workers run warm. */
  readonly warmup: readonly Doc[]
  readonly backlog: readonly Doc[]
  readonly live: readonly Doc[]
  /** Live traffic: documents start evenly over this window, their updates `gapMs` apart. */
  readonly windowMs: number
  readonly gapMs: number
}

/** In-process floor: docs/s of merge + compare-and-set, and of merge + archive + compare-and-set. */
const measureFloor = async (docs: readonly Doc[]) => {
  const dir = await mkdtemp(join(tmpdir(), 'bench-s6-floor-'))
  try {
    const storage = await createFsStorage({ dir })
    const rate = async (archive: boolean, only = docs, tag = '') => {
      const start = performance.now()
      for (const [i, d] of only.entries()) {
        const name = `${tag}${archive ? 'a' : 's'}-${d.name}`
        const state = snapshot(null, d.updates)
        if (archive)
          await storage.appendLog(
            name,
            d.updates.map((update, k) => ({ id: `${i + 1}-${k}`, update })),
          )
        await storage.compareAndSet(name, null, {
          state,
          watermark: `${i + 1}-${d.updates.length}`,
        })
      }
      return only.length / ((performance.now() - start) / 1000)
    }
    // Warm-up (JIT, file system caches), not counted.
    await rate(false, docs.slice(0, Math.max(1, docs.length / 10)), 'w')
    await rate(true, docs.slice(0, Math.max(1, docs.length / 10)), 'w')
    return { store: await rate(false), archive: await rate(true) }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/**
 * Pauses (SIGSTOP) or resumes (SIGCONT) the worker processes, so a backlog can be appended while
 * warm workers (code loaded, JIT and merge thread up) hold still, and all of them start on it at
 * once. A pause stays well below REDIS_COMMAND_TIMEOUT_MS, so no command in flight times out.
 */
const signalWorkers = (cluster: Cluster, signal: 'SIGSTOP' | 'SIGCONT') => {
  for (const w of cluster.workers) if (w.proc.child.pid) process.kill(w.proc.child.pid, signal)
}

/** Seconds from `since` until none of `docs` has a stream key left. */
const waitDrained = async (redis: Redis, keys: Keys, docs: readonly Doc[], since: number) => {
  let left = docs.map((d) => keys.stream(d.name))
  for (;;) {
    const pipeline = redis.pipeline()
    for (const k of left) pipeline.exists(k)
    const replies = (await pipeline.exec()) ?? []
    left = left.filter((_, i) => replies[i]?.[1] === 1)
    if (left.length === 0) return (performance.now() - since) / 1000
    if (performance.now() - since > 180_000)
      throw new Error(`${left.length} documents still not compacted after 180 s`)
    await sleep(pollMs)
  }
}

/** Stored state of every document against encodeStateAsUpdate of the same updates. */
const compareSnapshots = async (storage: DocStorage, docs: readonly Doc[]) => {
  let stored = 0
  let reference = 0
  let identical = 0
  const ratios: number[] = []
  for (const d of docs) {
    const s = await storage.load(d.name)
    if (!s) throw new Error(`${d.name} has no stored state`)
    const r = referenceState(d.updates)
    stored += s.state.length
    reference += r.length
    ratios.push(s.state.length / r.length)
    if (Buffer.from(s.state).equals(r)) identical++
  }
  return { stored, reference, identical, ratios }
}

const cpuCells = (cpu: Record<string, number>, workers: number): Row => ({
  'redis CPU s': fmt(cpu.redis ?? NaN),
  'worker0 CPU s': fmt(cpu.worker0 ?? NaN),
  'worker1 CPU s': workers > 1 ? fmt(cpu.worker1 ?? NaN) : '—',
  'bench CPU s': fmt(cpu.bench ?? NaN),
  'other processes CPU s': fmt(cpu.other ?? NaN),
})

const workerCpu = (cpu: Record<string, number>) =>
  Object.entries(cpu)
    .filter(([k]) => k.startsWith('worker'))
    .reduce((n, [, v]) => n + v, 0)

interface Results {
  throughput: Row[]
  cpu: Row[]
  durable: Row[]
  sizes: Row[]
}

/** What one run of a workload measured (the per-backend table is made of these). */
interface Measured {
  perWorker: number
  durableP50: number
  durableP95: number
  drainCpuMsPerDoc: number
  identical: string
}

/**
 * One workload (small or large documents) with W workers, on its own Redis and a fresh store of
 * `backend`; `workerEnv`: settings for the workers beyond S6's (default: the worker's own).
 */
const runWorkload = async (
  ctx: BenchContext,
  w: Workload,
  run: { workers: number; backend: BackendName; workerEnv?: Record<string, string> },
  floor: { store: number; archive: number },
  out: Results,
): Promise<Measured> => {
  const { workers } = run
  await using backend = await startBackend(run.backend)
  const env = { ...settings, ...backend.env, ...run.workerEnv }
  await using cluster = await startCluster({ nodes: 0, workers, env })
  const redis = new Redis(cluster.redis.url)
  const storage = await backend.open()
  try {
    const keys = createKeys(cluster.prefix)
    const streams: DocStreams = createDocStreams({ redis, keys, queueShards: 8 })

    const extra = Object.entries(run.workerEnv ?? {}).map(([k, v]) => `${k}=${v}`)
    const tag = [`${w.label}, W=${workers}, ${run.backend}`, ...extra].join(', ')
    ctx.log(`s6: ${tag}: warm-up, then the backlog`)
    await appendBacklog(streams, w.warmup)
    await waitDrained(redis, keys, w.warmup, performance.now())
    signalWorkers(cluster, 'SIGSTOP')
    try {
      await appendBacklog(streams, w.backlog)
      await sleep(idleMs + 50) // every document is due when the workers go on
    } finally {
      signalWorkers(cluster, 'SIGCONT')
    }
    const resumed = performance.now()
    const readCpu = meterAll(cluster)
    const seconds = await waitDrained(redis, keys, w.backlog, resumed)
    const cpu = readCpu()
    const docs = w.backlog.length
    const bytes = w.backlog.reduce((n, d) => n + totalBytes(d.updates), 0)
    const perWorker = docs / seconds / workers
    out.throughput.push({
      workload: w.label,
      workers,
      'input MiB': fmt(bytes / MB, 1),
      's to drain': fmt(seconds),
      'docs/s': fmt(docs / seconds, 0),
      'docs/s per worker': fmt(perWorker, perWorker < 10 ? 2 : 0),
      'MiB/s': fmt(bytes / MB / seconds, 1),
      'floor docs/s (merge + store)': fmt(floor.store, floor.store < 10 ? 2 : 0),
      'per worker ÷ floor': fmt(perWorker / floor.store),
      'floor docs/s (+ archive)': fmt(floor.archive, floor.archive < 10 ? 2 : 0),
      'per worker ÷ floor (+ archive)': fmt(perWorker / floor.archive),
    })
    out.cpu.push({
      workload: w.label,
      workers,
      'wall s': fmt(seconds),
      ...cpuCells(cpu, workers),
      'worker CPU ms per doc': fmt((workerCpu(cpu) * 1000) / docs, 1),
      'worker CPU ÷ (wall × W)': fmt(workerCpu(cpu) / (seconds * workers)),
    })

    // d: stored state against the reference.
    const sizes = await compareSnapshots(storage, w.backlog)
    out.sizes.push({
      workload: w.label,
      workers,
      docs,
      'stored bytes': sizes.stored,
      'encodeStateAsUpdate bytes': sizes.reference,
      'stored ÷ encodeStateAsUpdate': fmt(sizes.stored / sizes.reference, 3),
      'per doc min–max': `${fmt(Math.min(...sizes.ratios), 3)}–${fmt(Math.max(...sizes.ratios), 3)}`,
      'byte-identical': `${sizes.identical}/${docs}`,
    })

    // c: live traffic with the workers running, last write → durable.
    ctx.log(`s6: ${tag}: live writes, time to durable`)
    const probe = probeDurability(storage, pollMs)
    const readLiveCpu = meterAll(cluster)
    const started = performance.now()
    let times: number[]
    try {
      await writeLive(streams, w.live, { windowMs: w.windowMs, gapMs: w.gapMs, probe })
      times = await probe.settled(120_000)
    } finally {
      await probe.stop()
    }
    const liveWorkerCpu = workerCpu(readLiveCpu())
    const p50 = percentile(times, 50)
    const p95 = percentile(times, 95)
    out.durable.push({
      workload: w.label,
      workers,
      docs: times.length,
      'write window s': fmt(w.windowMs / 1000, 0),
      'p50 ms': fmt(p50, 0),
      'p95 ms': fmt(p95, 0),
      'max ms': fmt(percentile(times, 100), 0),
      [`p50 − ${idleMs} ms`]: fmt(p50 - idleMs, 0),
      [`p95 − ${idleMs} ms`]: fmt(p95 - idleMs, 0),
      'worker CPU ms per doc': fmt((liveWorkerCpu * 1000) / times.length, 1),
      'wall s': fmt((performance.now() - started) / 1000, 1),
    })
    return {
      perWorker,
      durableP50: p50,
      durableP95: p95,
      drainCpuMsPerDoc: (workerCpu(cpu) * 1000) / docs,
      identical: `${sizes.identical}/${docs}`,
    }
  } finally {
    await storage.close()
    redis.disconnect()
  }
}

const scenario: Scenario = {
  name: 's6',
  title: 'Compaction throughput, snapshot size, time to durable',
  run: async (ctx) => {
    const smallCount = ctx.quick ? 200 : 1000
    const largeCount = ctx.quick ? 2 : 10
    const largeBytes = (ctx.quick ? 2 : 5) * MB
    const workerCounts = ctx.quick ? [1] : [1, 2]
    const windowMs = ctx.quick ? 2000 : 5000

    ctx.log('s6: generating documents')
    const small = Array.from({ length: smallCount }, (_, i) => smallDocUpdates(i))
    const large = Array.from({ length: largeCount }, (_, i) => largeDocUpdates(i + 1, largeBytes))
    const named = (prefix: string, updates: Uint8Array[][]): Doc[] =>
      updates.map((u, i) => ({ name: `${prefix}-${i}`, updates: u }))
    const largeLabel = `${largeCount} large docs (${largeBytes / MB} MiB)`
    const workloads: Workload[] = [
      {
        label: `${smallCount} small docs`,
        warmup: named('warm-small', small.slice(0, 50)),
        backlog: named('small', small),
        live: named('live-small', small),
        windowMs,
        gapMs: 50,
      },
      {
        label: largeLabel,
        // Above WORKER_THREAD_ABOVE_BYTES, so every worker's merge thread is up.
        warmup: named(
          'warm-large',
          (ctx.quick ? [1, 2] : [1, 2, 3, 4]).map((i) => largeDocUpdates(100 + i, 600 * 1024)),
        ),
        backlog: named('large', large),
        live: named('live-large', large),
        windowMs,
        gapMs: 20,
      },
    ]

    ctx.log('s6: in-process floors')
    const floors = [await measureFloor(workloads[0]?.backlog ?? [])]
    floors.push(await measureFloor(workloads[1]?.backlog ?? []))

    const out: Results = { throughput: [], cpu: [], durable: [], sizes: [] }
    for (const workers of workerCounts) {
      for (const [i, w] of workloads.entries())
        await runWorkload(
          ctx,
          w,
          { workers, backend: 'fs' },
          floors[i] ?? { store: NaN, archive: NaN },
          out,
        )
    }

    // Group commit per backend: the small documents with one worker, with the settings workers had
    // before group commit (8 documents at a time, each stored on its own) and with the defaults.
    const perBackend: Row[] = []
    const smallWorkload = workloads[0]
    const before = { WORKER_CONCURRENCY: '8', WORKER_BATCH_SIZE: '1' }
    // s3rver (one Node process serving files, ~50 small puts/s here) gets a fifth of the documents:
    // with all of them, the durability probe's reads alone outran it past every timeout.
    const forBackend = (w: Workload, backend: BackendName): Workload => {
      if (backend !== 's3') return w
      const n = Math.max(20, Math.floor(w.backlog.length / 5))
      return {
        ...w,
        label: `${n} small docs`,
        warmup: w.warmup.slice(0, 10),
        backlog: w.backlog.slice(0, n),
        live: w.live.slice(0, n),
      }
    }
    if (smallWorkload) {
      for (const backend of ['fs', 'postgres', 's3'] as const) {
        let baseline: Measured | undefined
        const workload = forBackend(smallWorkload, backend)
        for (const workerEnv of [before, undefined]) {
          const m = await runWorkload(
            ctx,
            workload,
            { workers: 1, backend, workerEnv },
            floors[0] ?? { store: NaN, archive: NaN },
            { throughput: [], cpu: [], durable: [], sizes: [] },
          )
          baseline ??= m
          perBackend.push({
            storage: backendLabel(backend),
            docs: workload.backlog.length,
            settings: workerEnv ? 'before: concurrency 8, batch 1' : 'defaults: 64, 64',
            'docs/s per worker': fmt(m.perWorker, 0),
            '÷ before': fmt(m.perWorker / baseline.perWorker),
            'worker CPU ms per doc (drain)': fmt(m.drainCpuMsPerDoc, 2),
            'durable p50 ms': fmt(m.durableP50, 0),
            'durable p95 ms': fmt(m.durableP95, 0),
            [`p95 − ${idleMs} ms`]: fmt(m.durableP95 - idleMs, 0),
            'byte-identical': m.identical,
          })
        }
      }
    }

    const span = (values: number[], f: (n: number) => string) => {
      const [lo, hi] = [f(Math.min(...values)), f(Math.max(...values))]
      return lo === hi ? lo : `${lo}–${hi}`
    }
    const config = Object.entries(settings).map(([k, v]) => `${k}=${v}`)
    return [
      `Worker settings: ${config.join(', ')}; defaults for WORKER_CONCURRENCY (64), WORKER_THREADS ` +
        '(1) and WORKER_THREAD_ABOVE_BYTES (512 KiB); QUEUE_SHARDS=8; fs storage on the local disk.',
      '',
      `Small docs: ${small[0]?.length ?? 0} updates each ` +
        `(${fmt(totalBytes(small.flat()) / smallCount, 0)} bytes per doc). Large docs: ` +
        `${span(
          large.map((u) => u.length),
          String,
        )} updates of ~100 KiB each ` +
        `(${span(large.map(totalBytes), (n) => fmt(n / MB, 2))} MiB of updates per doc), each ` +
        'pasting 2 KiB chunks at random places and deleting three short ranges.',
      '',
      '**Throughput**: warm workers paused (SIGSTOP) while the backlog is appended, then resumed ' +
        'together; time from the resume until every stream key is gone. Floor: the same merge + fs store done in ' +
        'this process one document after another, without Redis or queue (as in compaction.ts); ' +
        '"+ archive" also writes the update log as a worker does.',
      '',
      table(out.throughput),
      '**CPU seconds per process** during the drain (bench: this process, which polls Redis; ' +
        'other: every other process on the machine; all share the same cores).',
      '',
      table(out.cpu),
      '**Time from last write to durable** (live writes with the workers running and idle: documents ' +
        `start evenly over the window, small ones send an update every 50 ms, large ones every 20 ms; ` +
        `from the acknowledgement of a document’s last append until storage holds a watermark at or ` +
        `above its id, polled every ${pollMs} ms). Includes the COMPACT_IDLE_MS wait by design.`,
      '',
      table(out.durable),
      '**Snapshot size**: each stored state read back against encodeStateAsUpdate of a Y.Doc built ' +
        'from the same updates (goal 1.0).',
      '',
      table(out.sizes),
      `**Group commit per backend** (${workloads[0]?.label ?? ''}, 1 worker): the drain and the ` +
        'time to durable above, on each backend, with the settings workers had before group commit ' +
        '(WORKER_CONCURRENCY=8, WORKER_BATCH_SIZE=1: each document stored on its own) and with ' +
        'the defaults (64 documents in hand, stored together: one Postgres transaction, one fsync ' +
        'pass, parallel S3 puts; docs/decisions/0013). Goal: 1 000 small documents/s per worker ' +
        'on Postgres and fs.',
      '',
      table(perBackend),
    ].join('\n')
  },
}

export default scenario
