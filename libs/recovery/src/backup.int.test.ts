import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { isAppError, silentLogger } from '@streambed/common'
import { createJobs } from '@streambed/jobs'
import { decodeLogBatch, decodeStateFile } from '@streambed/storage'
import { createKeys, createRedis, type Keys } from '@streambed/streams'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { type BackupTarget, openBackupTarget } from './backup-target.js'
import {
  backupBatch,
  backupName,
  finishBackup,
  MANIFEST_PATH,
  planBackup,
  pruneBackups,
  sha256Hex,
} from './backup.js'
import type { RecoveryDeps } from './documents.js'
import { readManifest } from './manifest.js'
import { type BackupSummary, createRecoveryOperations } from './operations.js'
import { verifyBackup } from './verify.js'
import { compact, depsOf, openSpace, writer } from './testing/world.js'

const fx = useRedisServer()

describe('backup', () => {
  let keys: Keys
  let space: Awaited<ReturnType<typeof openSpace>>
  let deps: RecoveryDeps
  let dir: string
  let target: BackupTarget
  beforeEach(async () => {
    keys = createKeys(uniquePrefix('backup'))
    space = await openSpace('fs')
    deps = depsOf(fx.admin, keys, space.storage)
    dir = await mkdtemp(join(tmpdir(), 'streambed-backup-'))
    target = openBackupTarget(join(dir, 'one'))
  })
  afterEach(async () => {
    await space.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('finds every document: stored, with history only, in Redis only', async () => {
    const stored = writer(deps, 'stored', 1)
    await stored.edit(2)
    await compact(deps, fx.blocking, 'stored')
    await writer(deps, 'streamed', 2).edit(2)
    const archived = writer(deps, 'archived', 3)
    await archived.edit(2)
    await compact(deps, fx.blocking, 'archived', { store: false })
    await fx.admin.del(keys.stream('archived'))
    expect(await planBackup(deps, target, { batchSize: 2 })).toEqual([
      ['archived', 'stored'],
      ['streamed'],
    ])
  })

  it('writes each file before returning its entry, and the manifest last', async () => {
    const w = writer(deps, 'doc', 4)
    await w.edit(5)
    await compact(deps, fx.blocking, 'doc')
    const stored = (await deps.storage.load('doc'))!
    await deps.storage.putCheckpoint('doc', { upTo: stored.watermark, state: stored.state })
    const tailIds = await w.edit(3)

    const entries = await backupBatch(deps, target, ['doc', 'gone'])
    expect(entries).toHaveLength(1)
    const [entry] = entries
    expect(entry).toMatchObject({
      name: 'doc',
      watermark: stored.watermark,
      tailLast: tailIds.at(-1),
      tailEntries: tailIds.length,
      checkpoints: 1,
    })
    expect(entry!.objects.map((o) => o.path)).toEqual([
      'docs/doc/state.ydoc',
      'docs/doc/tail.ylog',
      'docs/doc/log.ylog',
      expect.stringMatching(/^docs\/doc\/checkpoints\/\d{15}-\d{20}\.ydoc$/),
    ])
    for (const o of entry!.objects) {
      const bytes = (await target.get(o.path))!
      expect(bytes.byteLength).toBe(o.bytes)
      expect(sha256Hex(bytes)).toBe(o.sha256)
    }
    const state = decodeStateFile('x', (await target.get('docs/doc/state.ydoc'))!)
    expect(state).toMatchObject({ doc: 'doc', stored: { watermark: stored.watermark } })
    const tail = decodeLogBatch('x', (await target.get('docs/doc/tail.ylog'))!)
    expect(tail.map((e) => e.id)).toEqual(tailIds)

    // Not complete until the manifest is written.
    expect(isAppError(await readManifest(target).catch((e: unknown) => e), 'NOT_FOUND')).toBe(true)
    // Run again (a retried batch): same files, same entry.
    expect(await backupBatch(deps, target, ['doc'])).toEqual(entries)
    const manifest = await finishBackup(target, entries, { redisPrefix: keys.prefix })
    expect(manifest.totals).toMatchObject({
      documents: 1,
      objects: 4,
      tailEntries: tailIds.length,
    })
    expect(await readManifest(target)).toEqual(manifest)
    expect(await verifyBackup(target)).toMatchObject({ ok: true, documents: 1, objects: 4 })
    // A destination with a manifest is not written to again.
    const err = await planBackup(deps, target).catch((e: unknown) => e)
    expect(isAppError(err, 'CONFIG')).toBe(true)
    expect(await target.exists(MANIFEST_PATH)).toBe(true)
  })

  it('keeps the newest complete backups under a root, and backups still being written', async () => {
    const root = openBackupTarget(join(dir, 'root'))
    const names = [0, 1, 2, 3, 4, 5].map((i) => backupName(Date.UTC(2026, 10, 20 + i, 3)))
    // 0, 2, 3 and 5 complete; 1 failed; 4 in progress.
    for (const [i, name] of names.entries()) {
      await root.put(`${name}/docs/a/tail.ylog`, new Uint8Array([i]))
      if (i !== 1 && i !== 4) await root.put(`${name}/${MANIFEST_PATH}`, new Uint8Array([1]))
    }
    await root.put('not-a-backup/x', new Uint8Array([1]))
    expect(await pruneBackups(root, 2)).toEqual({
      kept: [names[3], names[5]],
      removed: [names[0], names[1], names[2]],
    })
    const left = new Set((await root.list()).map((o) => o.path.split('/')[0]))
    expect([...left].sort()).toEqual([names[3], names[4], names[5], 'not-a-backup'])
    expect(isAppError(await pruneBackups(root, 0).catch((e: unknown) => e), 'CONFIG')).toBe(true)
  })

  it('runs scheduled backups into dated folders and prunes them', async () => {
    await writer(deps, 'doc', 5).edit(2)
    const connection = createRedis({ url: fx.url, maxRetriesPerRequest: null })
    const jobs = createJobs({
      connection,
      redisPrefix: keys.prefix,
      logger: silentLogger(),
      operations: createRecoveryOperations(deps),
    })
    try {
      const root = join(dir, 'scheduled')
      const locations: string[] = []
      for (let i = 0; i < 3; i++) {
        const summary = (await jobs.runInline('backup', {
          dest: root,
          timestamped: true,
          keep: 2,
        })) as BackupSummary
        expect(summary.totals.documents).toBe(1)
        locations.push(summary.location)
      }
      const folders = new Set(
        (await openBackupTarget(root).list()).map((o) => o.path.split('/')[0]),
      )
      expect([...folders].sort()).toEqual(locations.slice(1).map((l) => l.slice(root.length + 1)))
      // An empty deployment backs up to an empty, complete backup.
      await fx.admin.del(keys.stream('doc'), keys.meta('doc'))
      const empty = (await jobs.runInline('backup', {
        dest: join(dir, 'empty'),
      })) as BackupSummary
      expect(empty.totals.documents).toBe(0)
      expect(await verifyBackup(openBackupTarget(join(dir, 'empty')))).toMatchObject({ ok: true })
    } finally {
      await jobs.close()
      connection.disconnect()
    }
  })
})
