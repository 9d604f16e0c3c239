/**
 * HISTORY (issue 9): update-log bytes per document per day of history, on each backend (fs, Postgres,
 * S3 on s3rver), without history maintenance and with it (the default settings, and a 7-day
 * retention), and whether history is still right after maintenance.
 *
 * Every document types a realistic history over simulated days (history-workload.ts): one Yjs
 * update per keystroke, archived with appendLog in the batches compaction makes, entry ids carrying
 * the simulated time. The same history goes into one store per variant: one never maintained, and
 * one per retention where maintainHistory (what the worker's `history-maintenance` job runs) runs
 * on the hourly schedule with `nowMs` the simulated time. The stored state a checkpoint is taken
 * from is written (compareAndSet) just before each run: it is what compaction had stored by then.
 *
 * Bytes are counted outside the storage library: fs, the sizes of the files under v1/log and
 * v1/checkpoints (and their allocated blocks); Postgres, octet_length of the `update` and `state`
 * columns (and pg_total_relation_size of the log table); S3, the sizes ListObjects reports. Each
 * is checked against logExtent's own count.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ListObjectsCommand, type S3Client } from '@aws-sdk/client-s3'
import { Redis } from 'ioredis'
import pg from 'pg'
import * as Y from 'yjs'
import { idTimeMs, isAppError } from '@streambed/common'
import {
  type DocumentAt,
  documentAt,
  type HistorySource,
  maintainHistory,
  type MaintenanceResult,
  type MaintenanceSettings,
} from '@streambed/recovery'
import {
  createFsStorage,
  createPostgresStorage,
  createS3Storage,
  type DocStorage,
  type LogEntry,
} from '@streambed/storage'
import { createDocStreams, createKeys } from '@streambed/streams'
import { startRedisServer, startS3Server, testDatabase, uniquePrefix } from '@streambed/testing'
import type { Scenario } from './framework.js'
import { DAY_MS, type DocHistory, docHistory, HOUR_MS, referenceAt } from './history-workload.js'
import { fmt, percentile, table, type Row } from './stats.js'

/** The worker's defaults: HISTORY_CHECKPOINT_INTERVAL, HISTORY_RETENTION, HISTORY_PACK_AFTER. */
const defaults: MaintenanceSettings = {
  checkpointEveryMs: HOUR_MS,
  retentionMs: 30 * DAY_MS,
  packAfterMs: HOUR_MS,
}

interface Variant {
  readonly label: string
  /** null: never maintained. */
  readonly settings: MaintenanceSettings | null
}

const variants: readonly Variant[] = [
  { label: 'no maintenance', settings: null },
  { label: 'maintained, retention 30 d (defaults)', settings: defaults },
  { label: 'maintained, retention 7 d', settings: { ...defaults, retentionMs: 7 * DAY_MS } },
]

/** Documents whose timelines run at once (each is sequential, as one document's are). */
const CONCURRENCY = 4

interface Usage {
  logBytes: number
  /** Files, objects or rows. */
  logObjects: number
  /** fs: blocks allocated to the log files; Postgres: pg_total_relation_size of the log table. */
  logFootprint: number
  checkpointBytes: number
  checkpoints: number
}

/** One store, empty at first, and its bytes counted by the backend's own means. */
interface Space {
  readonly storage: DocStorage
  readonly keysPrefix: string
  usage(): Promise<Usage>
  close(): Promise<void>
}

interface Backend {
  readonly label: string
  open(): Promise<Space>
  close(): Promise<void>
}

const emptyUsage = (): Usage => ({
  logBytes: 0,
  logObjects: 0,
  logFootprint: NaN,
  checkpointBytes: 0,
  checkpoints: 0,
})

/** Relative paths of the files under `dir` (none when it does not exist). */
const filesUnder = async (dir: string): Promise<string[]> => {
  const names = await readdir(dir, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return []
    throw err
  })
  return names.filter((n) => n.endsWith('.ylog') || n.endsWith('.ydoc'))
}

const fsBackend = (): Backend => ({
  label: 'fs',
  open: async () => {
    const dir = await mkdtemp(join(tmpdir(), 'streambed-bench-history-'))
    const storage = await createFsStorage({ dir })
    return {
      storage,
      keysPrefix: uniquePrefix('history'),
      usage: async () => {
        const u = emptyUsage()
        u.logFootprint = 0
        for (const name of await filesUnder(join(dir, 'v1/log'))) {
          const s = await stat(join(dir, 'v1/log', name))
          u.logBytes += s.size
          u.logFootprint += s.blocks * 512
          u.logObjects++
        }
        for (const name of await filesUnder(join(dir, 'v1/checkpoints'))) {
          u.checkpointBytes += (await stat(join(dir, 'v1/checkpoints', name))).size
          u.checkpoints++
        }
        return u
      },
      close: async () => {
        await storage.close()
        await rm(dir, { recursive: true, force: true })
      },
    }
  },
  close: async () => {},
})

const postgresBackend = (): Backend => ({
  label: 'Postgres',
  open: async () => {
    const db = await testDatabase(undefined, 'bench_history')
    const storage = await createPostgresStorage({ url: db.url, poolMax: 4 })
    const client = new pg.Client({ connectionString: db.url })
    await client.connect()
    const one = async (sql: string) =>
      (await client.query<Record<string, string>>(sql)).rows[0] ?? {}
    return {
      storage,
      keysPrefix: uniquePrefix('history'),
      usage: async () => {
        const log = await one(
          `SELECT count(*)::text AS n, coalesce(sum(octet_length("update")), 0)::text AS bytes,
             pg_total_relation_size('streambed_log_v1')::text AS relation
           FROM streambed_log_v1`,
        )
        const cps = await one(
          `SELECT count(*)::text AS n, coalesce(sum(octet_length(state)), 0)::text AS bytes
           FROM streambed_checkpoints_v1`,
        )
        return {
          logBytes: Number(log.bytes),
          logObjects: Number(log.n),
          logFootprint: Number(log.relation),
          checkpointBytes: Number(cps.bytes),
          checkpoints: Number(cps.n),
        }
      },
      close: async () => {
        await client.end()
        await storage.close()
        await db.close()
      },
    }
  },
  close: async () => {},
})

/** Every object of `bucket` (ListObjects V1: s3rver fails truncated ListObjectsV2 pages). */
const listAll = async (client: S3Client, bucket: string) => {
  const out: { key: string; size: number }[] = []
  let marker: string | undefined
  for (;;) {
    const page = await client.send(new ListObjectsCommand({ Bucket: bucket, Marker: marker }))
    for (const o of page.Contents ?? []) out.push({ key: o.Key ?? '', size: o.Size ?? 0 })
    marker = out.at(-1)?.key
    if (!page.IsTruncated || marker === undefined) return out
  }
}

const s3Backend = async (): Promise<Backend> => {
  const server = await startS3Server()
  const lister = server.client()
  return {
    label: `S3 (${server.kind})`,
    open: async () => {
      const bucket = await server.createBucket('history')
      const storage = await createS3Storage({ client: server.client(), bucket })
      return {
        storage,
        keysPrefix: uniquePrefix('history'),
        usage: async () => {
          const u = emptyUsage()
          for (const { key, size } of await listAll(lister, bucket)) {
            if (key.includes('/log/') && key.endsWith('.ylog')) {
              u.logBytes += size
              u.logObjects++
            } else if (key.includes('/checkpoints/')) {
              u.checkpointBytes += size
              u.checkpoints++
            }
          }
          return u
        },
        close: () => storage.close(),
      }
    },
    close: () => server.close(),
  }
}

/** Runs `fn` over `items`, `limit` at a time. */
const forEachLimit = async <T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> => {
  let next = 0
  const lane = async () => {
    while (next < items.length) {
      const i = next++
      await fn(items[i] as T, i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane))
}

const docName = (i: number) => `notes/${String(i).padStart(3, '0')}`

/** What the maintenance runs of one variant did, over the whole simulated history. */
interface RunStats {
  readonly ms: number[]
  checkpoints: number
  packed: number
  drops: number
  thinned: number
}

const newRunStats = (): RunStats => ({ ms: [], checkpoints: 0, packed: 0, drops: 0, thinned: 0 })

const count = (stats: RunStats, r: MaintenanceResult, ms: number) => {
  stats.ms.push(ms)
  if (r.checkpoint !== null) stats.checkpoints++
  stats.packed += r.packed
  if (r.droppedLogUpTo !== null) stats.drops++
  stats.thinned += r.droppedCheckpoints.length
}

/** Whether two documents hold the same content (text, state vector and deletions). */
const sameDoc = (a: Y.Doc, b: Y.Doc): boolean =>
  a.getText('t').toString() === b.getText('t').toString() &&
  Y.equalSnapshots(Y.snapshot(a), Y.snapshot(b))

interface Check {
  /** How long before the end (the bench's now) the time asked is. */
  readonly ageDays: number
  readonly exact: boolean
  /** False: documentAt said NOT_FOUND (the time is before the history kept). */
  readonly found: boolean
  readonly equal: boolean
  /** How far before the time asked the answer is (0 when exact), in hours. */
  readonly lagHours: number
}

/**
 * documentAt (what `restore-doc --at` and `export --at` run) at a few ages before `nowMs`, against
 * the document built from every update up to the same time (or up to the checkpoint it fell back
 * to). The time asked is inside a compaction batch: the middle entry of the last one archived by then.
 */
const checkHistory = async (
  source: HistorySource,
  doc: string,
  history: DocHistory,
  ages: readonly number[],
): Promise<Check[]> => {
  const checks: Check[] = []
  for (const ageDays of ages) {
    const target = history.endMs - ageDays * DAY_MS
    // The first batch when the document was not edited yet by then.
    let atMs = Number.NaN
    for (const e of history.events) {
      if (e.kind !== 'archive') continue
      if (!Number.isNaN(atMs) && idTimeMs((e.entries[0] as LogEntry).id) > target) break
      atMs = idTimeMs((e.entries[Math.floor(e.entries.length / 2)] as LogEntry).id)
    }
    let got: DocumentAt
    try {
      got = await documentAt(source, doc, atMs)
    } catch (err) {
      // Before the oldest checkpoint kept (the last of the document's first day): no history.
      if (!isAppError(err) || err.code !== 'NOT_FOUND') throw err
      checks.push({
        ageDays: (history.endMs - atMs) / DAY_MS,
        exact: false,
        found: false,
        equal: false,
        lagHours: NaN,
      })
      continue
    }
    const rebuilt = new Y.Doc()
    Y.applyUpdate(rebuilt, got.state)
    const reference = referenceAt(history, got.exact ? atMs : idTimeMs(got.upTo))
    checks.push({
      ageDays: (history.endMs - atMs) / DAY_MS,
      exact: got.exact,
      found: true,
      equal: sameDoc(rebuilt, reference),
      lagHours: (atMs - got.asOf) / HOUR_MS,
    })
    rebuilt.destroy()
    reference.destroy()
  }
  return checks
}

interface Measured {
  readonly backend: string
  readonly variant: string
  readonly usage: Usage
  /** logExtent's bytes summed over the documents (the library's own count). */
  readonly extentBytes: number
  /** Days the log reaches back from the end, mean over documents. */
  readonly logDays: number
  readonly runs: RunStats | null
  readonly checks: Check[]
}

const measure = async (space: Space, docs: number, endMs: number) => {
  const usage = await space.usage()
  let extentBytes = 0
  let logDays = 0
  for (let i = 0; i < docs; i++) {
    const extent = await space.storage.logExtent(docName(i))
    extentBytes += extent?.bytes ?? 0
    logDays += extent ? (endMs - idTimeMs(extent.first)) / DAY_MS : 0
  }
  return { usage, extentBytes, logDays: logDays / docs }
}

const scenario: Scenario = {
  name: 'history',
  title: 'Update-log bytes per document per day of history, per backend',
  run: async (ctx) => {
    const docs = ctx.quick ? 2 : 8
    const days = ctx.quick ? 34 : 42
    // The 7-day retention only in full runs: quick ones stay near a minute.
    const used = ctx.quick ? variants.slice(0, 2) : variants
    const startMs = Date.UTC(2026, 0, 5)
    ctx.log(`history: typing ${docs} documents over ${days} days`)
    const histories = Array.from({ length: docs }, (_, i) =>
      docHistory({ startMs, days, seed: 1000 + i }),
    )
    const endMs = (histories[0] as DocHistory).endMs
    const entries = histories.reduce((n, h) => n + h.entries.length, 0)
    const updateBytes = histories.reduce(
      (n, h) => n + h.entries.reduce((m, e) => m + e.update.byteLength, 0),
      0,
    )
    const batches = histories.reduce(
      (n, h) => n + h.events.filter((e) => e.kind === 'archive').length,
      0,
    )
    const sessions = histories.reduce((n, h) => n + h.sessions, 0)
    const finals = histories.map((h) => h.finalBytes)

    await using redis = await startRedisServer()
    const admin = new Redis(redis.url)
    const sourceOf = (space: Space): HistorySource => ({
      storage: space.storage,
      streams: createDocStreams({
        redis: admin,
        keys: createKeys(space.keysPrefix),
        queueShards: 1,
        storage: space.storage,
      }),
    })
    const verified = Math.min(docs, 4)
    const measured: Measured[] = []
    try {
      for (const makeBackend of [fsBackend, postgresBackend, s3Backend]) {
        const backend = await makeBackend()
        const spaces: Space[] = []
        try {
          for (const _ of used) spaces.push(await backend.open())
          ctx.log(`history: ${backend.label}: archiving and maintaining`)
          const runs = used.map(newRunStats)
          const started = performance.now()
          await forEachLimit(histories, CONCURRENCY, async (history, i) => {
            const doc = docName(i)
            const watermarks: (string | null)[] = used.map(() => null)
            for (const e of history.events) {
              if (e.kind === 'archive') {
                await Promise.all(spaces.map((s) => s.storage.appendLog(doc, e.entries)))
                continue
              }
              await Promise.all(
                used.map(async ({ settings }, k) => {
                  const { storage } = spaces[k] as Space
                  if (!settings) return
                  if (e.stored) {
                    if (!(await storage.compareAndSet(doc, watermarks[k] ?? null, e.stored)))
                      throw new Error(`${doc}: compare-and-set lost with no other writer`)
                    watermarks[k] = e.stored.watermark
                  }
                  const t = performance.now()
                  const r = await maintainHistory({ storage }, doc, { ...settings, nowMs: e.atMs })
                  count(runs[k] as RunStats, r, performance.now() - t)
                }),
              )
            }
          })
          ctx.log(
            `history: ${backend.label}: simulated in ${fmt((performance.now() - started) / 1000, 0)} s; measuring`,
          )
          for (const [k, variant] of used.entries()) {
            const space = spaces[k] as Space
            const m = await measure(space, docs, endMs)
            const retentionDays = (variant.settings?.retentionMs ?? Infinity) / DAY_MS
            const ages = [0.5, Math.min(15, retentionDays / 2), Math.min(retentionDays, days) - 1]
            if (retentionDays < days) ages.push(retentionDays + 1, days - 4)
            const checks: Check[] = []
            for (let i = 0; i < verified; i++)
              checks.push(
                ...(await checkHistory(
                  sourceOf(space),
                  docName(i),
                  histories[i] as DocHistory,
                  ages,
                )),
              )
            measured.push({
              backend: backend.label,
              variant: variant.label,
              ...m,
              runs: variant.settings ? (runs[k] as RunStats) : null,
              checks,
            })
          }

          // Maintenance turned on late: one run over the never-maintained store.
          const raw = spaces[0] as Space
          const late = newRunStats()
          for (const [i, history] of histories.entries()) {
            const last = history.events.findLast((e) => e.kind === 'maintain' && e.stored)
            if (last?.kind === 'maintain' && last.stored)
              await raw.storage.compareAndSet(docName(i), null, last.stored)
            const t = performance.now()
            const r = await maintainHistory({ storage: raw.storage }, docName(i), {
              ...defaults,
              nowMs: endMs,
            })
            count(late, r, performance.now() - t)
          }
          const checks: Check[] = []
          for (let i = 0; i < verified; i++)
            checks.push(
              ...(await checkHistory(sourceOf(raw), docName(i), histories[i] as DocHistory, [
                0.5,
                15,
                days - 4,
              ])),
            )
          measured.push({
            backend: backend.label,
            variant: 'no maintenance, then one run at the end (defaults)',
            ...(await measure(raw, docs, endMs)),
            runs: late,
            checks,
          })
        } finally {
          for (const s of spaces) await s.close()
          await backend.close()
        }
      }
    } finally {
      admin.disconnect()
    }

    const perDocDay = (bytes: number) => fmt(bytes / docs / days, 0)
    const sizeRows: Row[] = measured.map((m) => ({
      backend: m.backend,
      history: m.variant,
      'log B/doc/day': perDocDay(m.usage.logBytes),
      'log reaches back, days': fmt(m.logDays, 1),
      'log B/doc/day of log kept': fmt(m.usage.logBytes / docs / m.logDays, 0),
      'log objects or rows/doc': fmt(m.usage.logObjects / docs, 0),
      'log on disk B/doc/day': Number.isFinite(m.usage.logFootprint)
        ? perDocDay(m.usage.logFootprint)
        : '—',
      'checkpoints/doc': fmt(m.usage.checkpoints / docs, 1),
      'checkpoint B/doc/day': perDocDay(m.usage.checkpointBytes),
      'log + checkpoints B/doc/day': perDocDay(m.usage.logBytes + m.usage.checkpointBytes),
      'logExtent agrees': m.extentBytes === m.usage.logBytes ? 'yes' : `no (${m.extentBytes} B)`,
    }))
    const runRows: Row[] = measured
      .filter((m) => m.runs !== null)
      .map((m) => {
        const r = m.runs as RunStats
        return {
          backend: m.backend,
          history: m.variant,
          runs: r.ms.length,
          'total s': fmt(r.ms.reduce((a, b) => a + b, 0) / 1000, 1),
          'ms/run p50': fmt(percentile(r.ms, 50), 1),
          'ms/run p99': fmt(percentile(r.ms, 99), 1),
          'ms/run max': fmt(percentile(r.ms, 100), 0),
          'checkpoints written': r.checkpoints,
          'log objects packed': r.packed,
          'log drops': r.drops,
          'checkpoints thinned': r.thinned,
        }
      })
    const checkRows: Row[] = measured.map((m) => {
      const exact = m.checks.filter((c) => c.exact)
      const folded = m.checks.filter((c) => !c.exact && c.found)
      const missing = m.checks.filter((c) => !c.found)
      const ages = (cs: readonly Check[]) => {
        const days = cs.map((c) => c.ageDays)
        return days.length ? `${fmt(Math.min(...days), 1)}–${fmt(Math.max(...days), 1)}` : '—'
      }
      return {
        backend: m.backend,
        history: m.variant,
        'exact at (days ago)': ages(exact),
        'exact and equal': `${exact.filter((c) => c.equal).length}/${exact.length}`,
        'folded at (days ago)': ages(folded),
        'folded: checkpoint equal': `${folded.filter((c) => c.equal).length}/${folded.length}`,
        'folded: checkpoint before the time asked, h (max)': folded.length
          ? fmt(Math.max(...folded.map((c) => c.lagHours)), 1)
          : '—',
        'not found at (days ago)': ages(missing),
      }
    })
    const workload = table([
      {
        documents: docs,
        'days of history': days,
        'editing sessions': sessions,
        'updates (keystrokes)': entries,
        'update bytes/doc/day': perDocDay(updateBytes),
        'appendLog calls': batches,
        'final Y.Doc KiB (mean / max)': `${fmt(finals.reduce((a, b) => a + b, 0) / docs / 1024, 1)} / ${fmt(Math.max(...finals) / 1024, 1)}`,
      },
    ])
    const reading = [...new Set(measured.map((m) => m.backend))].map((backend) => {
      const of = (v: Variant) =>
        measured.find((m) => m.backend === backend && m.variant === v.label)?.usage ?? emptyUsage()
      const raw = of(variants[0] as Variant)
      const kept = of(variants[1] as Variant)
      return `${backend} ${perDocDay(raw.logBytes)} → ${perDocDay(kept.logBytes)} B/doc/day of log, ${perDocDay(kept.logBytes + kept.checkpointBytes)} with its checkpoints`
    })
    return [
      workload,
      `Each document is typed over ${days} simulated days (most weekdays, some weekend days; one to three sessions a day of 150–600 keystrokes with pauses, backspaces and cursor moves): one Yjs update per keystroke, archived with appendLog in the batches compaction makes with the default COMPACT_IDLE_MS (2 s) and COMPACT_INTERVAL_MS (30 s), ids carrying the simulated time. Each backend gets the same history once per row; maintainHistory (the \`history-maintenance\` job's work per document) runs on the default hourly schedule with the simulated time as now, after the stored state the worker would have written by then.\n`,
      table(sizeRows),
      `B/doc/day: bytes ÷ ${docs} documents ÷ ${days} days of history (the whole history is still there: exact where the log reaches, at the kept checkpoints before). "Log B/doc/day of log kept" divides by the days the log reaches back instead. Log bytes: fs, file sizes under v1/log ("on disk": allocated blocks); Postgres, sum of octet_length("update") over its rows ("on disk": pg_total_relation_size of streambed_log_v1 with its index and TOAST, deleted rows' space reused, not returned, until VACUUM FULL); S3, object sizes from ListObjects (V1: s3rver fails truncated V2 pages). fs and S3 batches hold each entry's id as a decimal string beside its update; Postgres stores ids in columns and packLog does nothing there (rows, not objects). Checkpoints (fs/S3 files with a small header; Postgres the state column) form a chain: the oldest a whole document, each later one what changed since the one before (Y.diffUpdate against the chain); maintenance writes one per hourly run after a change and thins them with age (all of the last two UTC days, one a day back to max(retention, 31 days), one a week for a year beyond, one per 4 weeks after, the oldest and the newest always).\n\nNo maintenance → defaults: ${reading.join('; ')}.\n`,
      table(runRows),
      `Maintenance time per run (maintainHistory of one document) over the simulated history, ${CONCURRENCY} documents at a time (s3rver answers in the bench's own process: its times include the server's work). The last row of each backend is one run over the never-maintained log at the end (maintenance turned on late).\n`,
      table(checkRows),
      `documentAt (what \`restore-doc --at\` and \`export --at\` run) for ${verified} documents at a time inside a compaction batch some days before the end, against a Y.Doc built from every update up to that time (text, state vector and delete set compared). Older than the retention the log is folded: the answer is the latest checkpoint before the time (exact = false), compared with the document at the checkpoint's upTo.\n`,
    ].join('\n')
  },
}
export default scenario
