import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { isAppError, silentLogger } from '@streambed/common'
import { createJobs, type Jobs } from '@streambed/jobs'
import { inspectUpdate } from '@streambed/protocol'
import {
  createKeys,
  createRedis,
  type Keys,
  partsOf,
  readDocument,
  type Redis,
} from '@streambed/streams'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { openBackupTarget } from './backup-target.js'
import type { RecoveryDeps } from './documents.js'
import { createRecoveryOperations, type ReplaySummary } from './operations.js'
import { planReplay, replayDocument } from './replay.js'
import { readManifest } from './manifest.js'
import { applied, compact, depsOf, jsonOf, openSpace, servedJSON, writer } from './testing/world.js'

const fx = useRedisServer()

/** Phases an hour ahead, a minute apart (ids from appends with a floor). */
const T0 = Math.ceil((Date.now() + 3_600_000) / 60_000) * 60_000
const PHASE_B = T0 + 60_000
const PHASE_C = T0 + 120_000

describe('replay after a Redis loss', () => {
  let keys: Keys
  let space: Awaited<ReturnType<typeof openSpace>>
  let deps: RecoveryDeps
  let jobs: Jobs
  let connection: Redis
  let dir: string

  beforeEach(async () => {
    keys = createKeys(uniquePrefix('replay'))
    space = await openSpace('fs')
    deps = depsOf(fx.admin, keys, space.storage)
    connection = createRedis({ url: fx.url, maxRetriesPerRequest: null })
    jobs = createJobs({
      connection,
      redisPrefix: keys.prefix,
      logger: silentLogger(),
      operations: createRecoveryOperations(deps),
    })
    dir = await mkdtemp(join(tmpdir(), 'streambed-replay-'))
  })
  afterEach(async () => {
    await jobs.close()
    connection.disconnect()
    await space.close()
    await rm(dir, { recursive: true, force: true })
  })

  /** The loss: every key of this deployment gone (other tests' prefixes stay). */
  const loseRedis = async () => {
    for (const key of await fx.admin.keys(`${keys.prefix}:*`)) await fx.admin.del(key)
  }

  /**
   * Stored at A; archived but not stored at B and C (the worker died after archiving); a tail at
   * C never archived. Returns what storage + log hold.
   */
  const crashedCompaction = async (doc: string, seed: number) => {
    const w = writer(deps, doc, seed)
    await w.edit(5, T0)
    await compact(deps, fx.blocking, doc)
    await w.edit(4, PHASE_B)
    await w.edit(3, PHASE_C)
    await compact(deps, fx.blocking, doc, { store: false })
    await w.edit(2, PHASE_C)
    const stored = (await deps.storage.load(doc))!
    const log = await deps.storage.readLog(doc, { after: stored.watermark })
    return {
      stored,
      log,
      json: JSON.stringify(jsonOf(applied([stored.state, ...log.map((e) => e.update)]))),
    }
  }

  it('brings back archived entries storage does not hold, and clients receive them', async () => {
    const docs = ['r1', 'r2', 'r3']
    const expected = new Map<string, { json: string; deleting: number; log: number }>()
    for (const [i, doc] of docs.entries()) {
      const { log, json } = await crashedCompaction(doc, 300 + i)
      const deleting = log.filter((e) => inspectUpdate(e.update).hasDeletes).length
      expected.set(doc, { json, deleting, log: log.length })
    }
    await loseRedis()
    for (const doc of docs) expect(await servedJSON(deps, doc)).not.toBe(expected.get(doc)!.json)

    // A node serving r1: it hears a doorbell per appended entry.
    const sub = createRedis({ url: fx.url })
    const rang: string[] = []
    sub.on('smessageBuffer', (_: Buffer, message: Buffer) =>
      rang.push(message.subarray(0, message.indexOf(10)).toString()),
    )
    await sub.ssubscribe(keys.channel('r1'))
    try {
      expect(await planReplay(deps)).toEqual([docs])
      const summary = (await jobs.runInline('replay', { source: 'log' })) as ReplaySummary
      expect(summary.documents).toBe(3)
      expect(summary.candidates).toBe([...expected.values()].reduce((n, e) => n + e.log, 0))
      for (const doc of docs) expect(await servedJSON(deps, doc), doc).toBe(expected.get(doc)!.json)
      const r1 = summary.changed.find((c) => c.doc === 'r1')!
      await expect.poll(() => rang.length).toBe(r1.appended)
      expect(rang.every((m) => m.startsWith('u '))).toBe(true)
    } finally {
      sub.disconnect()
    }

    // Twice: nothing is appended, not even the delete sets of entries that delete (the clock map
    // would strip their structs, not their deletions).
    expect([...expected.values()].some((e) => e.deleting > 0)).toBe(true)
    const again = (await jobs.runInline('replay', { source: 'log' })) as ReplaySummary
    expect(again).toMatchObject({
      appended: 0,
      candidates: [...expected.values()].reduce((n, e) => n + e.log, 0),
    })
    for (const doc of docs) expect(await servedJSON(deps, doc)).toBe(expected.get(doc)!.json)
  })

  it('replays only up to a time when asked', async () => {
    const w = writer(deps, 'u', 9)
    await w.edit(3, T0)
    await compact(deps, fx.blocking, 'u')
    const b = await w.edit(3, PHASE_B)
    await w.edit(3, PHASE_C)
    await compact(deps, fx.blocking, 'u', { store: false })
    const stored = (await deps.storage.load('u'))!
    const upToB = (await deps.storage.readLog('u', { after: stored.watermark })).filter((e) =>
      b.includes(e.id),
    )
    await loseRedis()
    const r = await replayDocument(deps, 'u', { untilMs: PHASE_B + 30_000 })
    expect(r).toMatchObject({ doc: 'u', watermark: stored.watermark, candidates: upToB.length })
    const want = applied([stored.state, ...upToB.map((e) => e.update)])
    expect(await servedJSON(deps, 'u')).toBe(JSON.stringify(jsonOf(want)))
    // The replayed entries carry new ids, above the stored watermark and in order.
    const read = await readDocument(deps.storage, deps.streams, 'u')
    expect(read.tail.entries).toHaveLength(r.appended)
    expect(JSON.stringify(jsonOf(applied(partsOf(read))))).toBe(JSON.stringify(jsonOf(want)))
  })

  it('brings back a stream tail that was never archived, from a backup', async () => {
    const docs = ['t1', 't2']
    const before = new Map<string, string>()
    for (const [i, doc] of docs.entries()) {
      await crashedCompaction(doc, 700 + i)
      before.set(doc, await servedJSON(deps, doc))
    }
    const dest = join(dir, 'b')
    await jobs.runInline('backup', { dest })
    await loseRedis()
    const summary = (await jobs.runInline('replay', {
      source: dest,
      docs: ['t1'],
    })) as ReplaySummary
    expect(summary.documents).toBe(1)
    expect(await servedJSON(deps, 't1')).toBe(before.get('t1'))
    expect(await servedJSON(deps, 't2')).not.toBe(before.get('t2'))
    // Directly, for the other one.
    const src = openBackupTarget(dest)
    const entry = (await readManifest(src)).documents.find((d) => d.name === 't2')!
    const r = await replayDocument(deps, 't2', { fromBackup: { src, entry } })
    expect(r.appended).toBeGreaterThan(0)
    expect(await servedJSON(deps, 't2')).toBe(before.get('t2'))
  })

  it('refuses a relative backup location for an operation that workers run', async () => {
    const err = await jobs.runInline('replay', { source: 'backups/x' }).catch((e: unknown) => e)
    expect(isAppError(err, 'CONFIG')).toBe(true)
  })
})
