import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type AppError, isAppError } from '@streambed/common'
import { createKeys, type Keys, readDocument } from '@streambed/streams'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { type BackupTarget, openBackupTarget } from './backup-target.js'
import { backupBatch, type BackupEntry, finishBackup } from './backup.js'
import type { RecoveryDeps } from './documents.js'
import { checkEmptyTarget, planRestore, restoreBatch } from './restore.js'
import { verifyDocument } from './verify.js'
import { applied, compact, depsOf, openSpace, servedJSON, writer } from './testing/world.js'

const fx = useRedisServer()

describe('restore', () => {
  let source: { keys: Keys; space: Awaited<ReturnType<typeof openSpace>>; deps: RecoveryDeps }
  let keys: Keys
  let space: Awaited<ReturnType<typeof openSpace>>
  let deps: RecoveryDeps
  let dir: string
  let src: BackupTarget
  let entries: BackupEntry[]
  let before: Map<string, string>
  const docs = ['a', 'b']

  beforeEach(async () => {
    const sourceKeys = createKeys(uniquePrefix('restore-src'))
    const sourceSpace = await openSpace('fs')
    source = {
      keys: sourceKeys,
      space: sourceSpace,
      deps: depsOf(fx.admin, sourceKeys, sourceSpace.storage),
    }
    before = new Map()
    for (const [i, doc] of docs.entries()) {
      const w = writer(source.deps, doc, 40 + i)
      await w.edit(4)
      await compact(source.deps, fx.blocking, doc)
      await w.edit(3)
      before.set(doc, await servedJSON(source.deps, doc))
    }
    dir = await mkdtemp(join(tmpdir(), 'streambed-restore-'))
    src = openBackupTarget(dir)
    entries = await backupBatch(source.deps, src, docs)
    await finishBackup(src, entries, { redisPrefix: sourceKeys.prefix })
    // The target: another prefix, another storage.
    keys = createKeys(uniquePrefix('restore'))
    space = await openSpace('fs')
    deps = depsOf(fx.admin, keys, space.storage, 3)
  })
  afterEach(async () => {
    await source.space.close()
    await space.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('restores into another prefix and shard count; a batch run twice restores the same', async () => {
    expect(await planRestore(deps, src)).toEqual([entries])
    const first = await restoreBatch(deps, src, entries)
    expect(first).toMatchObject({ documents: 2, states: { written: 2, present: 0 }, tasks: 2 })
    expect(first.tailAdded).toBe(entries.reduce((n, e) => n + e.tailEntries, 0))
    const second = await restoreBatch(deps, src, entries)
    expect(second).toMatchObject({
      states: { written: 0, present: 2, keptNewer: [] },
      tailAdded: 0,
      tailPresent: first.tailAdded,
      tasks: 0,
      rebuilt: [],
    })
    for (const doc of docs) {
      expect(await servedJSON(deps, doc)).toBe(before.get(doc))
      const read = await readDocument(deps.storage, deps.streams, doc)
      const original = await readDocument(source.deps.storage, source.deps.streams, doc)
      expect(read.tail.entries.map((e) => e.id)).toEqual(original.tail.entries.map((e) => e.id))
    }
  })

  it('runs again after a worker compacted the restored tail: nothing comes back twice', async () => {
    await restoreBatch(deps, src, entries)
    for (const doc of docs) await compact(deps, fx.blocking, doc)
    expect(await fx.admin.exists(keys.stream('a'), keys.stream('b'))).toBe(0)
    const again = await restoreBatch(deps, src, entries, { force: true })
    expect(again).toMatchObject({ tailAdded: 0, states: { keptNewer: ['a', 'b'] }, tasks: 0 })
    expect(await fx.admin.exists(keys.stream('a'), keys.stream('b'))).toBe(0)
    for (const doc of docs) {
      expect(await servedJSON(deps, doc)).toBe(before.get(doc))
      expect(await verifyDocument(deps, doc)).toMatchObject({ ok: true })
    }
  })

  it('with force, replaces a stored state behind the backup and keeps one ahead of it', async () => {
    // 'a' behind: an older state of a (its first edits only); 'b' ahead: its state and more.
    const original = (await source.deps.storage.load('a'))!
    const [ms] = original.watermark.split('-')
    await deps.storage.compareAndSet('a', null, {
      state: new Uint8Array([0, 0]),
      watermark: `${Number(ms) - 1}-0`,
    })
    const readB = await readDocument(source.deps.storage, source.deps.streams, 'b')
    const extra = new Y.Doc()
    extra.getText('x').insert(0, 'newer')
    const ahead = applied([
      readB.stored!.state,
      ...readB.tail.entries.map((e) => e.update),
      Y.encodeStateAsUpdate(extra),
    ])
    await deps.storage.compareAndSet('b', null, { state: ahead, watermark: '9999999999999-0' })

    const refused = (await planRestore(deps, src).catch((e: unknown) => e)) as AppError
    expect(isAppError(refused, 'CONFIG')).toBe(true)
    expect(refused.message).toContain('fs storage holds documents: a, b')
    const direct = await restoreBatch(deps, src, entries).catch((e: unknown) => e)
    expect(isAppError(direct, 'CONFIG')).toBe(true)

    const forced = await restoreBatch(deps, src, entries, { force: true })
    expect(forced.states).toEqual({ written: 1, present: 0, keptNewer: ['b'] })
    expect(await servedJSON(deps, 'a')).toBe(before.get('a'))
    // b: the stored state ahead stays (the tail entries below its watermark are not read).
    expect(JSON.parse(await servedJSON(deps, 'b'))).toMatchObject({ x: 'newer' })
  })

  it('refuses a target holding anything of a document, naming it', async () => {
    await checkEmptyTarget(deps)
    // A meta tombstone (a compacted, idle document) is something.
    await fx.admin.hset(keys.meta('tomb'), 'last', '1-1')
    await fx.admin.pexpire(keys.meta('tomb'), 60_000)
    let err = (await checkEmptyTarget(deps).catch((e: unknown) => e)) as AppError
    expect(err.code).toBe('CONFIG')
    expect(err.message).toMatch(/Redis \(prefix .*\) holds streams of documents: tomb/)
    await fx.admin.del(keys.meta('tomb'))
    // History without a state is something too; awareness and queue keys are not.
    await deps.storage.appendLog('logged', [{ id: '1-1', update: new Uint8Array([0, 0]) }])
    await fx.admin.hset(keys.awareness('present'), '1', 'x')
    await fx.admin.xadd(keys.queue(0), '*', 'd', 'x', 't', '1')
    err = (await checkEmptyTarget(deps).catch((e: unknown) => e)) as AppError
    expect(err.message).toMatch(/storage holds documents: logged$|logged\./)
    expect(err.message).not.toMatch(/present|Redis/)
    expect(err.details).toEqual({ redis: [], storage: ['logged'] })
  })
})
