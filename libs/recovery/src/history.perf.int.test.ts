import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { idTimeMs } from '@streambed/common'
import { createFsStorage, type DocStorage, type LogEntry } from '@streambed/storage'
import { createDocStreams, createKeys } from '@streambed/streams'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { docToJSON } from '@streambed/protocol'
import { documentAt, historyOf, type HistorySource, restoreDocument } from './history.js'

const fx = useRedisServer()

/**
 * A document with 100 000 logged updates (typing, with some deletions), one every
 * 100 ms over about 2.8 hours in the past, archived in batches of 1000 as compaction would, and
 * stored up to the last. Times are printed; the bounds only catch a regression by an order of
 * magnitude on a shared machine.
 */
const ENTRIES = 100_000
const SPACING_MS = 100
const T0 = Date.now() - ENTRIES * SPACING_MS - 3_600_000
const idOf = (i: number) => `${T0 + i * SPACING_MS}-0`

const timed = async <T>(label: string, fn: () => Promise<T>): Promise<T> => {
  const start = performance.now()
  const result = await fn()
  console.log(`${label}: ${(performance.now() - start).toFixed(0)} ms`)
  return result
}

describe('history of a document with 100 000 logged updates', () => {
  let dir: string
  let storage: DocStorage
  let source: HistorySource
  /** Content after entry i (docToJSON), for a few i. */
  const expected = new Map<number, unknown>()

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'streambed-history-perf-'))
    storage = await createFsStorage({ dir })
    const streams = createDocStreams({
      redis: fx.admin,
      keys: createKeys(uniquePrefix('perf')),
      queueShards: 1,
      storage,
    })
    source = { storage, streams }
    const writer = new Y.Doc()
    const text = writer.getText('t')
    const log: LogEntry[] = []
    writer.on('update', (u: Uint8Array) => log.push({ id: idOf(log.length), update: u }))
    // Typing near the end. (Formatting is left out: Yjs itself takes 15-40 s to make 100 000
    // edits of a text with formatting markers near where it types; restore-content.test.ts covers
    // formatting.)
    for (let i = 0; log.length < ENTRIES; i++) {
      const before = log.length
      if (i % 50 === 49) text.delete(text.length - 8, 3)
      else text.insert(text.length - (i % 7 === 0 ? 5 : 0), String.fromCharCode(97 + (i % 26)))
      if (log.length > before && (log.length === 50_000 || log.length === 99_000))
        expected.set(log.length - 1, docToJSON(Y.encodeStateAsUpdate(writer)))
    }
    for (let i = 0; i < ENTRIES; i += 1000) await storage.appendLog('d', log.slice(i, i + 1000))
    await storage.compareAndSet('d', null, {
      state: Y.encodeStateAsUpdate(writer),
      watermark: idOf(ENTRIES - 1),
    })
  }, 300_000)
  afterAll(async () => {
    await storage.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('rebuilds, lists and restores; checkpoints make it proportional to what follows them', async () => {
    const mid = idTimeMs(idOf(49_999))
    const late = idTimeMs(idOf(98_999))
    const full = await timed('documentAt, 99 000 entries replayed from the log', () =>
      documentAt(source, 'd', late),
    )
    expect(full).toMatchObject({ base: 'none', replayed: 99_000, exact: true })
    expect(docToJSON(full.state)).toEqual(expected.get(98_999))
    const half = await timed('documentAt, 50 000 entries replayed', () =>
      documentAt(source, 'd', mid),
    )
    expect(docToJSON(half.state)).toEqual(expected.get(49_999))

    const listing = await timed('historyOf, 100 000 entries in minute buckets', () =>
      historyOf(source, 'd'),
    )
    expect(listing.versions.reduce((n, v) => n + ('entries' in v ? v.entries : 0), 0)).toBe(ENTRIES)
    const minute = (i: number) => Math.floor(idTimeMs(idOf(i)) / 60_000)
    expect(listing.versions).toHaveLength(minute(ENTRIES - 1) - minute(0) + 1)

    // Checkpoints every 10 000 entries (what a history job keeps).
    for (let i = 9_999; i < ENTRIES; i += 10_000) {
      const at = await documentAt(source, 'd', idTimeMs(idOf(i)))
      await storage.putCheckpoint('d', { upTo: at.upTo, state: at.state })
    }
    const fromCheckpoint = await timed('documentAt, checkpoint + 9 000 entries', () =>
      documentAt(source, 'd', late),
    )
    expect(fromCheckpoint).toMatchObject({ base: 'checkpoint', replayed: 9_000 })
    expect(docToJSON(fromCheckpoint.state)).toEqual(expected.get(98_999))
    const atCheckpoint = await timed('documentAt, checkpoint + 0 entries', () =>
      documentAt(source, 'd', mid),
    )
    expect(atCheckpoint).toMatchObject({ base: 'checkpoint', replayed: 0 })

    const restored = await timed('restoreDocument to entry 50 000 (checkpoint + 0)', () =>
      restoreDocument(source, 'd', mid, 'perf/restore'),
    )
    expect(restored.appended).not.toBeNull()
    await storage.dropCheckpoints('d', await storage.listCheckpoints('d'))
    const again = await timed('restoreDocument to entry 99 000 (99 000 replayed)', () =>
      restoreDocument(source, 'd', late, 'perf/restore'),
    )
    expect(again.appended).not.toBeNull()
  }, 300_000)
})
