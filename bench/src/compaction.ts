/**
 * Compaction: throughput of W worker processes over N small dirty documents, snapshot sizes, and
 * join time of a 10k-update document before and after compaction. Floor measured in the same run:
 * the same merge + store work done in-process, one document after another, without Redis or queue.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { Redis } from 'ioredis'
import { mergeAll } from '@streambed/protocol'
import { createFsStorage } from '@streambed/storage'
import { createDocStreams, createKeys } from '@streambed/streams'
import { startRedisServer, uniquePrefix } from '@streambed/testing'
import { spawnBuilt } from './cluster.js'
import { snapshot } from '@streambed/worker'
import { joinOnce } from './join.js'
import { typingTrace } from './traces.js'
import { fmt, summary, table, type Row } from './stats.js'

const smallDocUpdates = (i: number): Uint8Array[] => {
  const doc = new Y.Doc()
  const out: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => out.push(u))
  for (let k = 0; k < 5; k++) doc.getText('t').insert(0, `doc ${i} edit ${k} `)
  doc.getMap('m').set('n', i)
  return out
}

const fastWorker = {
  COMPACT_IDLE_MS: '20',
  COMPACT_INTERVAL_MS: '20',
  MIN_MESSAGE_LIFETIME_MS: '0',
  WORKER_CONCURRENCY: '32',
}

/** Seconds until every document's stream key is gone (stored, trimmed and deleted). */
const waitAllCompacted = async (
  admin: Redis,
  keys: ReturnType<typeof createKeys>,
  docs: string[],
): Promise<number> => {
  const start = performance.now()
  for (;;) {
    const pipeline = admin.pipeline()
    for (const d of docs) pipeline.exists(keys.stream(d))
    const left = ((await pipeline.exec()) ?? []).filter(([, v]) => v === 1).length
    if (left === 0) return (performance.now() - start) / 1000
    if (performance.now() - start > 300_000)
      throw new Error(`${left} documents still not compacted`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

export const runCompaction = async (opts: { docs: number; workers: number[] }): Promise<string> => {
  await using redis = await startRedisServer()
  const admin = new Redis(redis.url)
  const rows: Row[] = []

  // Floor: merge + fs store of the same documents in-process, sequentially.
  const floorDir = await mkdtemp(join(tmpdir(), 'bench-floor-'))
  const floorStorage = await createFsStorage({ dir: floorDir })
  const inputs = Array.from({ length: opts.docs }, (_, i) => smallDocUpdates(i))
  const floorStart = performance.now()
  for (let i = 0; i < inputs.length; i++) {
    const state = snapshot(null, inputs[i] as Uint8Array[])
    await floorStorage.compareAndSet(`doc-${i}`, null, { state, watermark: `${i + 1}-0` })
  }
  const floorRate = opts.docs / ((performance.now() - floorStart) / 1000)
  await rm(floorDir, { recursive: true, force: true })

  for (const workers of opts.workers) {
    const prefix = uniquePrefix(`bench-compact-${workers}`)
    const dir = await mkdtemp(join(tmpdir(), 'bench-compact-'))
    const env = { REDIS_URL: redis.url, REDIS_PREFIX: prefix, STORAGE_DIR: dir, ...fastWorker }
    const keys = createKeys(prefix)
    const streams = createDocStreams({ redis: admin, keys, queueShards: 8 })
    const docs = inputs.map((_, i) => `doc-${i}`)
    // Dirty documents first, then the workers: measures draining a backlog.
    for (let i = 0; i < docs.length; i += 100) {
      await Promise.all(
        docs
          .slice(i, i + 100)
          .flatMap((d, j) =>
            (inputs[i + j] as Uint8Array[]).map((u) => streams.append(d, u, 'bench/0')),
          ),
      )
    }
    await new Promise((r) => setTimeout(r, 100))
    const procs = await Promise.all(
      Array.from({ length: workers }, () => spawnBuilt(env, { command: 'worker' })),
    )
    const seconds = await waitAllCompacted(admin, keys, docs)
    await Promise.all(procs.map((p) => p.stop()))
    await rm(dir, { recursive: true, force: true })
    rows.push({
      documents: opts.docs,
      workers,
      'seconds to drain': fmt(seconds),
      'docs/s': fmt(opts.docs / seconds, 0),
      'docs/s per worker': fmt(opts.docs / seconds / workers, 0),
      'in-process floor docs/s': fmt(floorRate, 0),
      '÷ floor': fmt(opts.docs / seconds / floorRate),
    })
  }
  admin.disconnect()
  return table(rows)
}

/** Stored snapshot size against encodeStateAsUpdate and against Y.mergeUpdates, on editing traces. */
export const runSnapshotSizes = async (opts: { largeTrace: boolean }): Promise<string> => {
  const rows: Row[] = []
  const traces: [string, Uint8Array[]][] = [
    ['typing trace, 10k edits (1 in 7 deletes)', typingTrace(10_000)],
  ]
  if (opts.largeTrace) traces.push(['typing trace, 50k edits', typingTrace(50_000)])
  for (const [name, updates] of traces) {
    const snap = snapshot(null, updates)
    const doc = new Y.Doc()
    for (const u of updates) Y.applyUpdate(doc, u)
    const reference = Y.encodeStateAsUpdate(doc)
    // The node's merge (a tree of Y.mergeUpdates calls): one flat call over 50k updates takes minutes.
    const merged = mergeAll(updates)
    rows.push({
      trace: name,
      'snapshot bytes': snap.length,
      'encodeStateAsUpdate bytes': reference.length,
      'snapshot ÷ encodeStateAsUpdate': fmt(snap.length / reference.length),
      'mergeAll bytes': merged.length,
      'mergeAll ÷ snapshot': fmt(merged.length / snap.length),
    })
  }
  return table(rows)
}

/** Join time of a document of N updates: all in the stream, then after a worker compacted it. */
export const runJoinAfterCompaction = async (opts: {
  entries: number
  repeats: number
}): Promise<string> => {
  await using redis = await startRedisServer()
  const prefix = uniquePrefix('bench-jc')
  const dir = await mkdtemp(join(tmpdir(), 'bench-jc-'))
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: prefix, STORAGE_DIR: dir }
  const admin = new Redis(redis.url)
  const keys = createKeys(prefix)
  const streams = createDocStreams({ redis: admin, keys, queueShards: 8 })
  await using node = await spawnBuilt(env)
  const updates = typingTrace(opts.entries)
  for (let i = 0; i < updates.length; i += 500)
    await Promise.all(updates.slice(i, i + 500).map((u) => streams.append('doc', u, 'bench/0')))
  const before: number[] = []
  for (let r = 0; r < opts.repeats; r++) before.push((await joinOnce(node.url, 'doc')).ms)
  const worker = await spawnBuilt({ ...env, ...fastWorker }, { command: 'worker' })
  await waitAllCompacted(admin, keys, ['doc'])
  await worker.stop()
  const after: number[] = []
  let bytes = 0
  for (let r = 0; r < opts.repeats; r++) {
    const j = await joinOnce(node.url, 'doc')
    after.push(j.ms)
    bytes = j.bytes
  }
  admin.disconnect()
  await rm(dir, { recursive: true, force: true })
  const b = summary(before)
  const a = summary(after)
  return table([
    {
      state: `${opts.entries} entries in the stream`,
      'join p50 ms': fmt(b.p50),
      'join p99 ms': fmt(b.p99),
    },
    {
      state: `compacted (${bytes} bytes in storage)`,
      'join p50 ms': fmt(a.p50),
      'join p99 ms': fmt(a.p99),
    },
  ])
}
