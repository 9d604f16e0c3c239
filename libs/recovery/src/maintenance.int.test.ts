import * as Y from 'yjs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { isAppError, silentLogger, type StreamId } from '@streambed/common'
import { createJobs } from '@streambed/jobs'
import type { LogEntry } from '@streambed/storage'
import { createKeys, createRedis, type Keys } from '@streambed/streams'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import type { RecoveryDeps } from './documents.js'
import { documentAt } from './history.js'
import { maintainHistory, type MaintenanceSettings } from './maintenance.js'
import { createRecoveryOperations, type HistoryMaintenanceResult } from './operations.js'
import { applied, depsOf, openSpace, type StorageKind } from './testing/world.js'

const fx = useRedisServer()

const DAY = 86_400_000
const H = 3_600_000
/** A UTC midnight; entries at 10:00 and 14:00 on days 0..9 after it. */
const D0 = Date.UTC(2026, 0, 1)
const at = (day: number, hour: number) => D0 + day * DAY + hour * H
const idAt = (day: number, hour: number): StreamId => `${at(day, hour)}-0`

const settings: MaintenanceSettings = {
  checkpointEveryMs: DAY,
  retentionMs: 5 * DAY,
  packAfterMs: 2 * DAY,
}

describe.each<StorageKind>(['fs', 'postgres'])('history maintenance on %s storage', (kind) => {
  let keys: Keys
  let space: Awaited<ReturnType<typeof openSpace>>
  let deps: RecoveryDeps
  let entries: LogEntry[]
  const textAfter = (n: number) =>
    Array.from({ length: n }, (_, i) => `d${Math.floor(i / 2)}h${i % 2 ? 14 : 10} `).join('')

  beforeEach(async () => {
    keys = createKeys(uniquePrefix('maint'))
    space = await openSpace(kind)
    deps = depsOf(fx.admin, keys, space.storage)
    // One entry at 10:00 and 14:00 of each day, each archived as its own log batch; stored up to
    // the last; checkpoints at every entry of days 0..4 and at 10:00 of day 5.
    const doc = new Y.Doc()
    const updates: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => updates.push(u))
    entries = []
    for (let day = 0; day < 10; day++) {
      for (const hour of [10, 14]) {
        const text = doc.getText('t')
        text.insert(text.length, `d${day}h${hour} `)
        entries.push({ id: idAt(day, hour), update: updates.at(-1)! })
      }
    }
    for (const e of entries) await space.storage.appendLog('doc', [e])
    const all = entries.map((e) => e.update)
    await space.storage.compareAndSet('doc', null, {
      state: applied(all),
      watermark: entries.at(-1)!.id,
    })
    for (let i = 0; i < 11; i++)
      await space.storage.putCheckpoint('doc', {
        upTo: entries[i]!.id,
        state: applied(all.slice(0, i + 1)),
      })
  })
  afterEach(() => space.close())

  const textAt = async (ms: number) => {
    const r = await documentAt(deps, 'doc', ms)
    const d = new Y.Doc()
    Y.applyUpdate(d, r.state)
    return { text: d.getText('t').toString(), exact: r.exact }
  }

  it('checkpoints, packs, folds the log into a checkpoint and thins old checkpoints per day', async () => {
    const nowMs = at(10, 12)
    const before = await textAt(at(7, 12))
    const result = await maintainHistory(deps, 'doc', { ...settings, nowMs })
    expect(result).toEqual({
      doc: 'doc',
      checkpoint: idAt(9, 14),
      // Every batch of days 0..7 (the last whole day older than packAfterMs): one segment.
      packed: kind === 'fs' ? 16 : 0,
      // The newest checkpoint older than the retention.
      droppedLogUpTo: idAt(5, 10),
      // The last of each day older than yesterday stays, and the oldest (where history starts).
      droppedCheckpoints: [1, 2, 3, 4].map((d) => idAt(d, 10)),
    })
    expect(await deps.storage.listCheckpoints('doc')).toEqual([
      idAt(0, 10),
      ...[0, 1, 2, 3, 4].map((d) => idAt(d, 14)),
      idAt(5, 10),
      idAt(9, 14),
    ])
    expect((await deps.storage.readLog('doc')).map((e) => e.id)).toEqual(
      entries.slice(11).map((e) => e.id),
    )
    // Exact from the fold on, as before; before it, one state per day (the day's last checkpoint).
    expect(await textAt(at(7, 12))).toEqual(before)
    expect(before).toEqual({ text: textAfter(15), exact: true })
    expect(await textAt(at(5, 10))).toEqual({ text: textAfter(11), exact: true })
    expect(await textAt(at(5, 12))).toEqual({ text: textAfter(11), exact: true })
    expect(await textAt(at(2, 12))).toEqual({ text: textAfter(4), exact: false })

    // Again: nothing left to do.
    expect(await maintainHistory(deps, 'doc', { ...settings, nowMs })).toEqual({
      doc: 'doc',
      checkpoint: null,
      packed: 0,
      droppedLogUpTo: null,
      droppedCheckpoints: [],
    })
    // A day later: storage did not move, so no checkpoint; entries of day 5 and 6 are past the
    // retention but stay in the log: no checkpoint holds them (the next is day 9's).
    const later = await maintainHistory(deps, 'doc', { ...settings, nowMs: nowMs + DAY })
    expect(later).toMatchObject({ checkpoint: null, droppedLogUpTo: null })
    expect((await deps.storage.readLog('doc'))[0]?.id).toBe(idAt(5, 14))
  })

  it('refuses settings that would fold history no checkpoint holds', async () => {
    const err = await maintainHistory(deps, 'doc', {
      checkpointEveryMs: 10 * DAY,
      retentionMs: DAY,
      packAfterMs: 0,
      nowMs: at(10, 0),
    }).catch((e: unknown) => e)
    expect(isAppError(err, 'CONFIG')).toBe(true)
  })

  it('runs as an operation over every document', async () => {
    const connection = createRedis({ url: fx.url, maxRetriesPerRequest: null })
    const jobs = createJobs({
      connection,
      redisPrefix: keys.prefix,
      logger: silentLogger(),
      operations: createRecoveryOperations(deps),
    })
    try {
      const result = (await jobs.runInline('history-maintenance', {
        ...settings,
      })) as HistoryMaintenanceResult
      // Now is long after D0: one checkpoint at the watermark, everything before it folded.
      expect(result).toMatchObject({ documents: 1, checkpoints: 1, logsDropped: 1 })
      expect(await deps.storage.logExtent('doc')).toBeNull()
    } finally {
      await jobs.close()
      connection.disconnect()
    }
  })
})
