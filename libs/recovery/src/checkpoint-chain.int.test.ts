import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { compareIds, idTimeMs, type StreamId } from '@streambed/common'
import type { LogEntry } from '@streambed/storage'
import { createKeys } from '@streambed/streams'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { openBackupTarget } from './backup-target.js'
import { backupBatch, finishBackup } from './backup.js'
import { applyThinning, planThinning, readChain } from './checkpoint-chain.js'
import { checkpointsToDrop } from './checkpoint-spacing.js'
import type { RecoveryDeps } from './documents.js'
import { documentAt } from './history.js'
import { maintainHistory, type MaintenanceSettings } from './maintenance.js'
import { restoreBatch } from './restore.js'
import { applied, depsOf, openSpace, type StorageKind } from './testing/world.js'
import { createGen, randomEdits } from './testing/random-docs.js'

const fx = useRedisServer()

const DAY = 86_400_000
const H = 3_600_000
const D0 = Date.UTC(2026, 0, 5)
const settings: MaintenanceSettings = {
  checkpointEveryMs: H,
  retentionMs: 7 * DAY,
  packAfterMs: H,
}

/**
 * A document edited in sessions over simulated days: every update an entry of its own (ids at
 * the simulated time), each session archived as one log batch and then stored, as compaction does.
 */
const editedDocument = (seed: number) => {
  const ydoc = new Y.Doc()
  const gen = createGen(seed)
  const pending: Uint8Array[] = []
  ydoc.on('update', (u: Uint8Array) => pending.push(u))
  const entries: LogEntry[] = []
  return {
    ydoc,
    entries,
    /** `edits` random edits at `atMs` onwards (a millisecond apart); returns the entries. */
    session: (atMs: number, edits: number): LogEntry[] => {
      const added: LogEntry[] = []
      for (let i = 0; i < edits; i++) {
        randomEdits(gen, ydoc, 1)
        for (const update of pending.splice(0))
          added.push({ id: `${atMs + added.length}-0`, update })
      }
      entries.push(...added)
      return added
    },
  }
}

/** The document made of every entry up to `upTo`. */
const reference = (entries: readonly LogEntry[], upTo: StreamId): Y.Doc => {
  const d = new Y.Doc()
  for (const e of entries) if (compareIds(e.id, upTo) <= 0) Y.applyUpdate(d, e.update)
  return d
}

/** Same content: JSON of every root, state vector and delete set. */
const expectSame = (state: Uint8Array, want: Y.Doc, what: string) => {
  const got = new Y.Doc()
  Y.applyUpdate(got, state)
  expect(got.toJSON(), what).toEqual(want.toJSON())
  expect(Y.equalSnapshots(Y.snapshot(got), Y.snapshot(want)), what).toBe(true)
  got.destroy()
}

/** Whether a checkpoint applies alone (a whole state) rather than after the ones before it. */
const isWhole = (state: Uint8Array) => {
  const d = new Y.Doc()
  Y.applyUpdate(d, state)
  const whole = d.store.pendingStructs === null
  d.destroy()
  return whole
}

describe.each<StorageKind>(['fs', 'postgres'])('checkpoint chain on %s storage', (kind) => {
  let space: Awaited<ReturnType<typeof openSpace>>
  let deps: RecoveryDeps

  beforeEach(async () => {
    space = await openSpace(kind)
    deps = depsOf(fx.admin, createKeys(uniquePrefix('chain')), space.storage)
  })
  afterEach(() => space.close())

  /** One session: archived, stored, then a maintenance run at `runAtMs`. */
  const sessionThenMaintain = async (
    doc: ReturnType<typeof editedDocument>,
    atMs: number,
    edits: number,
    runAtMs: number,
  ) => {
    const added = doc.session(atMs, edits)
    await space.storage.appendLog('d', added)
    const watermark = await space.storage.watermark('d')
    const last = added.at(-1) as LogEntry
    expect(
      await space.storage.compareAndSet('d', watermark, {
        state: Y.encodeStateAsUpdate(doc.ydoc),
        watermark: last.id,
      }),
    ).toBe(true)
    return maintainHistory(deps, 'd', { ...settings, nowMs: runAtMs })
  }

  /**
   * documentAt at every checkpoint kept, at times inside the retention (exact) and beyond it (the
   * checkpoint before), against the document made of the entries up to what it says it holds.
   */
  const checkHistory = async (entries: readonly LogEntry[], nowMs: number) => {
    const checkpoints = await space.storage.listCheckpoints('d')
    const extent = await space.storage.logExtent('d')
    for (const c of checkpoints) {
      const at = await documentAt(deps, 'd', idTimeMs(c))
      expect(compareIds(at.upTo, c)).toBeGreaterThanOrEqual(0)
      const want = reference(entries, at.upTo)
      expectSame(at.state, want, `at checkpoint ${c}`)
      want.destroy()
    }
    // Where history starts: the first checkpoint, or the first entry while the log has it.
    const first = idTimeMs(extent?.first ?? checkpoints[0] ?? (entries[0] as LogEntry).id)
    const startMs = Math.min(idTimeMs(checkpoints[0] ?? `${first}-0`), first)
    for (let t = nowMs - 2 * H; t > nowMs - settings.retentionMs && t >= startMs; t -= 5 * H) {
      const at = await documentAt(deps, 'd', t)
      expect(at.exact, `exact at ${new Date(t).toISOString()}`).toBe(true)
      const want = reference(entries, `${t}-18446744073709551615`)
      expectSame(at.state, want, `at ${new Date(t).toISOString()}`)
      want.destroy()
    }
    for (let t = nowMs - settings.retentionMs - DAY; t >= startMs; t -= 3 * DAY) {
      const at = await documentAt(deps, 'd', t)
      if (extent && compareIds(`${t}-0`, extent.first) < 0)
        expect(at).toMatchObject({ exact: false, base: 'checkpoint' })
      const want = reference(entries, at.upTo)
      expectSame(at.state, want, `folded at ${new Date(t).toISOString()}`)
      want.destroy()
    }
  }

  it('stays exact and proportionate over 60 days of daily edits and maintenance', async () => {
    const doc = editedDocument(7)
    let runs = 0
    let thinned = 0
    for (let day = 0; day < 60; day++) {
      const base = D0 + day * DAY
      for (const hour of [9, 14]) {
        const r = await sessionThenMaintain(doc, base + hour * H, 12, base + (hour + 2) * H)
        runs++
        thinned += r.droppedCheckpoints.length
      }
    }
    const nowMs = D0 + 59 * DAY + 20 * H
    await maintainHistory(deps, 'd', { ...settings, nowMs })
    expect(runs).toBe(120)
    expect(thinned).toBeGreaterThan(60)

    const chain = await readChain(space.storage, 'd')
    // Today and yesterday (4), one a day back to 31 days (30), 4 weeks before that, the oldest.
    expect(chain.length).toBeGreaterThanOrEqual(36)
    expect(chain.length).toBeLessThanOrEqual(40)
    const finalBytes = Y.encodeStateAsUpdate(doc.ydoc).byteLength
    const chainBytes = chain.reduce((n, c) => n + c.state.byteLength, 0)
    // Whole states would cost about chain.length × the document (each at least a tenth of it
    // after the first days); the chain costs about one document and what the edits added.
    expect(chainBytes).toBeLessThan(3 * finalBytes)
    expect(chainBytes).toBeLessThan((chain.length * finalBytes) / 8)
    // The oldest holds a whole state (the document's first), the rest only what changed.
    expect(Math.max(...chain.slice(1).map((c) => c.state.byteLength))).toBeLessThan(finalBytes / 4)
    await checkHistory(doc.entries, nowMs)
  })

  it('reads right with a crash between storing the successor and dropping the thinned', async () => {
    const doc = editedDocument(11)
    // Four checkpoints on each of two days, none thinned yet (nothing older than yesterday).
    for (let day = 0; day < 2; day++)
      for (const hour of [8, 11, 15, 19])
        await sessionThenMaintain(
          doc,
          D0 + day * DAY + hour * H,
          8,
          D0 + day * DAY + (hour + 2) * H,
        )
    const nowMs = D0 + 3 * DAY + 12 * H
    const chain = await readChain(space.storage, 'd')
    expect(chain).toHaveLength(8)
    // Thin to the spacing, as maintenance would, but stop after storing the rewritten ones.
    const drop = new Set(
      checkpointsToDrop(
        chain.map((c) => c.upTo),
        { nowMs, retentionMs: settings.retentionMs },
      ),
    )
    // Days 0 and 1 keep their last, and the oldest stays.
    expect(drop.size).toBe(5)
    const rewrites = planThinning(chain, drop)
    expect(rewrites.map((r) => r.absorbs.length)).toEqual([2, 3])
    for (const r of rewrites) await space.storage.putCheckpoint('d', r.checkpoint)
    expect(await space.storage.listCheckpoints('d')).toHaveLength(8)
    await checkHistory(doc.entries, nowMs)

    // A run after the crash finishes the job, and the chain reads the same.
    const r = await maintainHistory(deps, 'd', { ...settings, nowMs })
    expect([...r.droppedCheckpoints].sort()).toEqual([...drop].sort())
    expect(await space.storage.listCheckpoints('d')).toHaveLength(3)
    await checkHistory(doc.entries, nowMs)
    // Running the rewrites again (a retried job) changes nothing.
    await applyThinning(space.storage, 'd', rewrites)
    expect(await space.storage.listCheckpoints('d')).toHaveLength(3)
    await checkHistory(doc.entries, nowMs)
  })

  it('reads whole-state checkpoints from before chains mixed with deltas', async () => {
    const doc = editedDocument(23)
    // Whole states, one a day for 10 days, as maintenance wrote them before chains.
    for (let day = 0; day < 10; day++) {
      const added = doc.session(D0 + day * DAY + 10 * H, 10)
      await space.storage.appendLog('d', added)
      await space.storage.putCheckpoint('d', {
        upTo: (added.at(-1) as LogEntry).id,
        state: applied(doc.entries.map((e) => e.update)),
      })
    }
    await space.storage.compareAndSet('d', null, {
      state: Y.encodeStateAsUpdate(doc.ydoc),
      watermark: (doc.entries.at(-1) as LogEntry).id,
    })
    // Deltas after them, some of the whole ones thinned, the rest still whole.
    for (let day = 10; day < 14; day++)
      for (const hour of [9, 15])
        await sessionThenMaintain(
          doc,
          D0 + day * DAY + hour * H,
          10,
          D0 + day * DAY + (hour + 1) * H,
        )
    const nowMs = D0 + 13 * DAY + 20 * H
    const chain = await readChain(space.storage, 'd')
    expect(chain.filter((c) => isWhole(c.state)).length).toBeGreaterThanOrEqual(7)
    // Days 10 and 11 thinned to their last (today and yesterday whole): 2 + 4.
    expect(chain.filter((c) => !isWhole(c.state)).length).toBe(6)
    await checkHistory(doc.entries, nowMs)
    // Weeks later the whole ones are thinned into the chain, and it still reads right.
    const later = nowMs + 50 * DAY
    await maintainHistory(deps, 'd', { ...settings, nowMs: later })
    await checkHistory(doc.entries, later)
  })

  it('keeps a chain through backup and restore (its checkpoints copied as they are)', async () => {
    const doc = editedDocument(31)
    for (let day = 0; day < 12; day++)
      for (const hour of [9, 15])
        await sessionThenMaintain(
          doc,
          D0 + day * DAY + hour * H,
          6,
          D0 + day * DAY + (hour + 1) * H,
        )
    const nowMs = D0 + 11 * DAY + 20 * H
    const chain = await readChain(space.storage, 'd')
    expect(chain.filter((c) => !isWhole(c.state)).length).toBeGreaterThan(5)

    const dir = await mkdtemp(join(tmpdir(), 'streambed-chain-backup-'))
    const target = await openSpace(kind)
    try {
      const backup = openBackupTarget(dir)
      const entries = await backupBatch(deps, backup, ['d'])
      await finishBackup(backup, entries, { redisPrefix: deps.keys.prefix })
      const restoredDeps = depsOf(fx.admin, createKeys(uniquePrefix('chain-r')), target.storage)
      await restoreBatch(restoredDeps, backup, entries)
      expect(await readChain(target.storage, 'd')).toEqual(chain)
      const original = { space, deps }
      space = target
      deps = restoredDeps
      try {
        await checkHistory(doc.entries, nowMs)
      } finally {
        space = original.space
        deps = original.deps
      }
    } finally {
      await target.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
