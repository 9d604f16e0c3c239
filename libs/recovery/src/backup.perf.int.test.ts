import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '@streambed/common'
import { createJobs } from '@streambed/jobs'
import { createKeys, createRedis, type Keys } from '@streambed/streams'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { mapLimit, type RecoveryDeps } from './documents.js'
import {
  type BackupSummary,
  createRecoveryOperations,
  type RestoreSummary,
  type VerifySummary,
} from './operations.js'
import { depsOf, openSpace, servedJSON } from './testing/world.js'

const fx = useRedisServer()

/**
 * 1 000 small documents (a stored state of two updates, those two in the log, one entry in the
 * stream) backed up to a directory and restored from it inline, on fs storage. Times are printed
 * (docs/benchmarks.md sizes the benchmark from them); the bounds only catch a regression by an
 * order of magnitude on a shared machine.
 */
const DOCS = 1000
const timed = async <T>(label: string, fn: () => Promise<T>): Promise<T> => {
  const start = performance.now()
  const result = await fn()
  console.log(`${label}: ${(performance.now() - start).toFixed(0)} ms`)
  return result
}

describe(`backup and restore of ${DOCS} small documents on fs`, () => {
  let keys: Keys
  let space: Awaited<ReturnType<typeof openSpace>>
  let deps: RecoveryDeps
  let dir: string
  const names = Array.from({ length: DOCS }, (_, i) => `perf/doc-${String(i).padStart(4, '0')}`)

  beforeAll(async () => {
    keys = createKeys(uniquePrefix('backup-perf'))
    space = await openSpace('fs')
    deps = depsOf(fx.admin, keys, space.storage, 4)
    dir = await mkdtemp(join(tmpdir(), 'streambed-backup-perf-'))
    const base = Date.now() - 3_600_000
    await timed(`populate ${DOCS} documents`, async () => {
      await mapLimit(names, 8, async (doc, i) => {
        const ydoc = new Y.Doc()
        const updates: Uint8Array[] = []
        ydoc.on('update', (u: Uint8Array) => updates.push(u))
        ydoc.getText('t').insert(0, `hello ${doc}`)
        ydoc.getMap('m').set('n', i)
        const log = updates.map((update, j) => ({ id: `${base + i}-${j}`, update }))
        await deps.storage.appendLog(doc, log)
        await deps.storage.compareAndSet(doc, null, {
          state: Y.encodeStateAsUpdate(ydoc),
          watermark: log.at(-1)!.id,
        })
        ydoc.getText('t').insert(0, '> ')
        await deps.streams.append(doc, updates.at(-1)!, 'perf/writer', { floor: log.at(-1)!.id })
      })
    })
  }, 300_000)
  afterAll(async () => {
    await space.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('backs up, restores after a loss and verifies', async () => {
    const connection = createRedis({ url: fx.url, maxRetriesPerRequest: null })
    const jobsOf = () =>
      createJobs({
        connection,
        redisPrefix: keys.prefix,
        logger: silentLogger(),
        operations: createRecoveryOperations(deps),
      })
    const sample = names.filter((_, i) => i % 97 === 0)
    const before = new Map<string, string>()
    for (const doc of sample) before.set(doc, await servedJSON(deps, doc))
    const dest = join(dir, 'backup')
    let jobs = jobsOf()
    const backup = (await timed(`backup of ${DOCS} documents (inline, fs)`, () =>
      jobs.runInline('backup', { dest }),
    )) as BackupSummary
    expect(backup.totals).toMatchObject({ documents: DOCS, objects: 3 * DOCS })
    console.log(`backup size: ${backup.totals.bytes} bytes in ${backup.totals.objects} files`)
    await jobs.close()

    for (const key of await fx.admin.keys(`${keys.prefix}:*`)) await fx.admin.del(key)
    await space.close()
    space = await openSpace('fs')
    deps = depsOf(fx.admin, keys, space.storage, 4)
    jobs = jobsOf()
    try {
      const restored = (await timed(`restore of ${DOCS} documents (inline, fs)`, () =>
        jobs.runInline('restore', { src: dest }),
      )) as RestoreSummary
      expect(restored).toMatchObject({ documents: DOCS, statesWritten: DOCS, tailAdded: DOCS })
      const verified = (await timed(`verify of ${DOCS} documents`, () =>
        jobs.runInline('verify', {}),
      )) as VerifySummary
      expect(verified).toMatchObject({ ok: true, documents: DOCS })
      const verifiedBackup = (await timed(`verify of the backup`, () =>
        jobs.runInline('verify', { backup: dest }),
      )) as VerifySummary
      expect(verifiedBackup.ok).toBe(true)
      for (const doc of sample) expect(await servedJSON(deps, doc)).toBe(before.get(doc))
    } finally {
      await jobs.close()
      connection.disconnect()
    }
  }, 300_000)
})
