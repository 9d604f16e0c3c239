import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type AppError, idTimeMs, isAppError, nextId, type StreamId } from '@streambed/common'
import { createFsStorage, type DocStorage } from '@streambed/storage'
import {
  createDocStreams,
  createKeys,
  type DocStreams,
  type Keys,
  partsOf,
  readDocument,
} from '@streambed/streams'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { docToJSON } from '@streambed/protocol'
import { documentAt, historyOf, type HistorySource, restoreDocument } from './history.js'

const fx = useRedisServer()

/**
 * Phases of edits, each placed at its own minute of one hour in the future (ids from real appends
 * with a floor; later appends follow on from them).
 */
const T0 = Math.ceil((Date.now() + 3_600_000) / 3_600_000) * 3_600_000
const PHASE_A = T0
const PHASE_B = T0 + 60_000
const PHASE_C = T0 + 120_000
/** After C: an edit of another root, so that what follows (restores) is past C's minute. */
const PHASE_D = T0 + 180_000

const rejection = async (p: Promise<unknown>): Promise<AppError> => {
  try {
    await p
  } catch (err) {
    expect(isAppError(err)).toBe(true)
    return err as AppError
  }
  throw new Error('expected a rejection')
}

const merged = (parts: readonly Uint8Array[]): Uint8Array => {
  const doc = new Y.Doc()
  doc.transact(() => {
    for (const p of parts) Y.applyUpdate(doc, p)
  })
  return Y.encodeStateAsUpdate(doc)
}

describe('history', () => {
  let dir: string
  let storage: DocStorage
  let keys: Keys
  let streams: DocStreams
  let source: HistorySource

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'streambed-history-'))
    storage = await createFsStorage({ dir })
    keys = createKeys(uniquePrefix('history'))
    streams = createDocStreams({ redis: fx.admin, keys, queueShards: 1, storage })
    source = { storage, streams }
  })
  afterEach(async () => {
    await storage.close()
    await rm(dir, { recursive: true, force: true })
  })

  /** A client whose every transaction is appended, with ids at `atMs` (or later). */
  const writer = (doc: string) => {
    const ydoc = new Y.Doc()
    const pending: Uint8Array[] = []
    ydoc.on('update', (u: Uint8Array) => pending.push(u))
    return {
      ydoc,
      edit: async (atMs: number, ...edits: ((d: Y.Doc) => void)[]): Promise<StreamId[]> => {
        for (const edit of edits) ydoc.transact(() => edit(ydoc))
        const ids: StreamId[] = []
        for (const u of pending.splice(0)) {
          const r = await streams.append(doc, u, 'test/writer', { floor: `${atMs}-0` })
          if (r) ids.push(r.id)
        }
        return ids
      },
      json: () => docToJSON(Y.encodeStateAsUpdate(ydoc)),
    }
  }

  /** What a worker does: archive the tail to the log, store, trim the stream. */
  const compact = async (doc: string) => {
    const read = await readDocument(storage, streams, doc)
    if (read.tail.entries.length === 0) return
    await storage.appendLog(
      doc,
      read.tail.entries.map((e) => ({ id: e.id, update: e.update })),
    )
    const stored = await storage.compareAndSet(doc, read.stored?.watermark ?? null, {
      state: merged(partsOf(read)),
      watermark: read.upTo,
    })
    expect(stored).toBe(true)
    await fx.admin.xtrim(keys.stream(doc), 'MINID', nextId(read.upTo))
    await fx.admin.hset(keys.meta(doc), 'trimmed', nextId(read.upTo))
  }

  /** Three phases of a Tiptap-like document and a map; compacted after each when asked. */
  const threePhases = async (doc: string, compactEach: boolean) => {
    const w = writer(doc)
    const prose = (d: Y.Doc) => d.getXmlFragment('prose')
    const para = (s: string, marks: object = {}) => {
      const p = new Y.XmlElement('paragraph')
      const t = new Y.XmlText()
      t.insert(0, s, marks)
      p.insert(0, [t])
      return p
    }
    const firstText = (d: Y.Doc) => (prose(d).get(0) as Y.XmlElement).get(0) as Y.XmlText
    const a = await w.edit(
      PHASE_A,
      (d) => prose(d).insert(0, [para('Hello world')]),
      (d) => d.getMap('meta').set('title', 'Draft'),
      (d) => prose(d).push([para('second', { bold: {} })]),
    )
    const jsonA = w.json()
    if (compactEach) await compact(doc)
    const b = await w.edit(
      PHASE_B,
      (d) => firstText(d).insert(5, ',', {}),
      (d) => d.getMap('meta').set('title', 'Review'),
      (d) => prose(d).delete(1, 1),
    )
    const jsonB = w.json()
    if (compactEach) await compact(doc)
    const c = await w.edit(
      PHASE_C,
      (d) => firstText(d).delete(0, 6),
      (d) => d.getMap('meta').delete('title'),
      (d) => prose(d).push([para('final')]),
    )
    const jsonC = w.json()
    if (compactEach) await compact(doc)
    const d = await w.edit(PHASE_D, (d) => d.getText('notes').insert(0, 'later'))
    const jsonD = w.json()
    if (compactEach) await compact(doc)
    return { w, ids: { a, b, c, d }, json: { a: jsonA, b: jsonB, c: jsonC, d: jsonD } }
  }

  it('rebuilds each phase from the log and the stream, exactly', async () => {
    const { ids, json } = await threePhases('d', true)
    expect(idTimeMs(ids.a[0]!)).toBe(PHASE_A)
    expect(idTimeMs(ids.c.at(-1)!)).toBe(PHASE_C)
    for (const [at, want, upTo] of [
      [PHASE_A + 30_000, json.a, ids.a.at(-1)],
      [PHASE_B, json.b, ids.b.at(-1)],
      [PHASE_C + 5, json.c, ids.c.at(-1)],
      [PHASE_D, json.d, ids.d.at(-1)],
    ] as const) {
      const got = await documentAt(source, 'd', at)
      expect(docToJSON(got.state)).toEqual(want)
      expect(got).toMatchObject({ exact: true, asOf: at, upTo })
    }
    // Past the stored watermark: the stored state, no replay.
    expect(await documentAt(source, 'd', PHASE_D + 60_000)).toMatchObject({
      base: 'stored',
      replayed: 0,
    })
  })

  it('rebuilds from the stream alone and from log and stream overlapping', async () => {
    const { ids, json } = await threePhases('d', false)
    expect(docToJSON((await documentAt(source, 'd', PHASE_B)).state)).toEqual(json.b)
    // Archived but not yet stored: the log holds what the stream still holds.
    const read = await readDocument(storage, streams, 'd')
    await storage.appendLog(
      'd',
      read.tail.entries.slice(0, 5).map((e) => ({ id: e.id, update: e.update })),
    )
    const got = await documentAt(source, 'd', PHASE_B)
    expect(docToJSON(got.state)).toEqual(json.b)
    expect(got.replayed).toBe(ids.a.length + ids.b.length)
  })

  it('says when the document did not exist or has no history', async () => {
    const { ids } = await threePhases('d', true)
    const err = await rejection(documentAt(source, 'd', PHASE_A - 1))
    expect(err.code).toBe('NOT_FOUND')
    expect(err.message).toBe(
      `document d did not exist at ${new Date(PHASE_A - 1).toISOString()}; its history starts ` +
        `at ${new Date(idTimeMs(ids.a[0]!)).toISOString()}`,
    )
    const none = await rejection(documentAt(source, 'nothing', PHASE_A))
    expect(none.code).toBe('NOT_FOUND')
    expect(none.message).toBe('document nothing has no history')
  })

  it('serves folded history from the checkpoint before it, and replays only after one', async () => {
    const { ids, json } = await threePhases('d', true)
    const lastA = ids.a.at(-1)!
    const lastB = ids.b.at(-1)!
    // A history job: checkpoints at the end of A and of B, then the log up to B dropped.
    for (const upTo of [lastA, lastB]) {
      const at = await documentAt(source, 'd', idTimeMs(upTo))
      expect(at.upTo).toBe(upTo)
      await storage.putCheckpoint('d', { upTo, state: at.state })
    }
    await storage.dropLog('d', lastB)
    expect((await storage.logExtent('d'))?.first).toBe(ids.c[0])

    // Between A's and B's ends the log is gone: A's checkpoint answers, as of its time.
    const folded = await documentAt(source, 'd', PHASE_B - 1)
    expect(docToJSON(folded.state)).toEqual(json.a)
    expect(folded).toMatchObject({ exact: false, asOf: idTimeMs(lastA), base: 'checkpoint' })
    // At B's checkpoint and after it, history is whole: the checkpoint plus the log after it.
    expect(await documentAt(source, 'd', PHASE_B)).toMatchObject({
      exact: true,
      base: 'checkpoint',
      replayed: 0,
      upTo: lastB,
    })
    const c = await documentAt(source, 'd', PHASE_C)
    expect(docToJSON(c.state)).toEqual(json.c)
    expect(c).toMatchObject({ exact: true, base: 'checkpoint', replayed: ids.c.length })
    expect(await documentAt(source, 'd', PHASE_D)).toMatchObject({ base: 'stored' })

    // Before the first checkpoint nothing is left.
    const err = await rejection(documentAt(source, 'd', PHASE_A - 1))
    expect(err.code).toBe('NOT_FOUND')
    expect(err.message).toContain(`its history starts at ${new Date(PHASE_A).toISOString()}`)
    expect(err.message).toContain('folded')
  })

  it('refuses to rebuild across a hole in the log', async () => {
    const { ids } = await threePhases('d', false)
    const read = await readDocument(storage, streams, 'd')
    // Archived only from phase B on (a log started late), stored and trimmed up to the end.
    const fromB = read.tail.entries.filter((e) => e.id >= ids.b[0]!)
    await storage.appendLog(
      'd',
      fromB.map((e) => ({ id: e.id, update: e.update })),
    )
    await storage.compareAndSet('d', null, { state: merged(partsOf(read)), watermark: read.upTo })
    await fx.admin.xtrim(keys.stream('d'), 'MINID', nextId(read.upTo))
    await fx.admin.hset(keys.meta('d'), 'trimmed', nextId(read.upTo))
    const err = await rejection(documentAt(source, 'd', PHASE_B))
    expect(err.code).toBe('NOT_FOUND')
    expect(err.message).toContain('has a hole')
    // Past the stored watermark the stored state serves.
    expect(docToJSON((await documentAt(source, 'd', PHASE_D)).state)).toEqual(
      docToJSON(merged(partsOf(read))),
    )
  })

  it('restores a middle phase as a forward update that live readers converge to', async () => {
    const { ids, json } = await threePhases('d', true)
    // A live client: everything so far applied, then the stream from where it is.
    const live = new Y.Doc()
    const before = await readDocument(storage, streams, 'd')
    for (const p of partsOf(before)) Y.applyUpdate(live, p)

    const result = await restoreDocument(source, 'd', PHASE_B + 30_000, 'recovery/restore')
    expect(result).toMatchObject({ exact: true, asOf: PHASE_B + 30_000, upTo: ids.b.at(-1) })
    expect(result.appended).not.toBeNull()

    const after = await readDocument(storage, streams, 'd')
    expect(docToJSON(merged(partsOf(after)))).toEqual(json.b)
    for (const e of (await streams.readTail('d', before.upTo)).entries)
      Y.applyUpdate(live, e.update)
    expect(docToJSON(Y.encodeStateAsUpdate(live))).toEqual(json.b)

    // Nothing is lost: phase C's entries stay in the log, the restore is one more entry.
    await compact('d')
    const log = (await storage.readLog('d')).map((e) => e.id)
    expect(log).toEqual([...ids.a, ...ids.b, ...ids.c, ...ids.d, result.appended!.id])
    expect(idTimeMs(result.appended!.id)).toBe(PHASE_D)
    expect(docToJSON((await documentAt(source, 'd', PHASE_C)).state)).toEqual(json.c)

    // Restoring what the document already shows appends nothing; restoring to C's time undoes
    // the restore (and D's edit).
    const again = await restoreDocument(source, 'd', PHASE_B + 30_000, 'recovery/restore')
    expect(again.appended).toBeNull()
    await restoreDocument(source, 'd', PHASE_C, 'recovery/restore')
    expect(docToJSON(merged(partsOf(await readDocument(storage, streams, 'd'))))).toEqual(json.c)
  })

  it('keeps a live edit made after the restore was computed', async () => {
    const { w, json } = await threePhases('d', true)
    const restored = await restoreDocument(source, 'd', PHASE_A + 1, 'recovery/restore')
    expect(restored.appended).not.toBeNull()
    // The writer had not seen the restore: its next edit merges with it.
    await w.edit(PHASE_D, (d) => d.getMap('meta').set('late', true))
    const now = docToJSON(merged(partsOf(await readDocument(storage, streams, 'd'))))
    expect(now).toEqual({ ...json.a, meta: { ...(json.a.meta as object), late: true } })
  })

  it('lists versions per bucket with checkpoints, the newest within the limit', async () => {
    const { ids } = await threePhases('d', true)
    await storage.putCheckpoint('d', {
      upTo: ids.b.at(-1)!,
      state: (await documentAt(source, 'd', PHASE_B)).state,
    })
    // One entry still only in the stream.
    const w2 = writer('d')
    const [late] = await w2.edit(PHASE_D + 90_000, (d) => d.getMap('other').set('k', 1))
    const sizes = new Map(
      [...(await storage.readLog('d')), ...(await streams.readTail('d', '0-0')).entries].map(
        (e) => [e.id, e.update.byteLength],
      ),
    )
    const bytesOf = (list: readonly string[]) => list.reduce((n, id) => n + sizes.get(id)!, 0)
    const { versions, omitted } = await historyOf(source, 'd')
    expect(omitted).toBe(0)
    expect(versions).toEqual([
      { at: PHASE_A, upTo: ids.a.at(-1), entries: ids.a.length, bytes: bytesOf(ids.a) },
      { at: PHASE_B, upTo: ids.b.at(-1), entries: ids.b.length, bytes: bytesOf(ids.b) },
      { at: PHASE_B, upTo: ids.b.at(-1), checkpoint: true },
      { at: PHASE_C, upTo: ids.c.at(-1), entries: ids.c.length, bytes: bytesOf(ids.c) },
      { at: PHASE_D, upTo: ids.d.at(-1), entries: ids.d.length, bytes: bytesOf(ids.d) },
      { at: PHASE_D + 90_000, upTo: late, entries: 1, bytes: bytesOf([late!]) },
    ])
    // Each version's time gives that version.
    for (const v of versions) expect((await documentAt(source, 'd', v.at)).upTo).toBe(v.upTo)

    const hourly = await historyOf(source, 'd', { bucketMs: 3_600_000, limit: 2 })
    expect(hourly.omitted).toBe(0)
    expect((await historyOf(source, 'd', { bucketMs: 3_600_000, limit: 1 })).omitted).toBe(1)
    expect(hourly.versions).toEqual([
      { at: PHASE_B, upTo: ids.b.at(-1), checkpoint: true },
      {
        at: PHASE_D + 90_000,
        upTo: late,
        entries: sizes.size,
        bytes: [...sizes.values()].reduce((a, b) => a + b, 0),
      },
    ])
  })
})
