import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import {
  compareWatermarks,
  type DocStorage,
  type LogEntry,
  type LogRange,
  normaliseLog,
} from './index.js'
import {
  contractBackends,
  entry,
  expectBytes,
  expectLog,
  type Space,
  spaceForEachTest,
  stored,
} from './testing/contract.js'

/**
 * The storage contract for history (disaster recovery and point-in-time reads): the update log's
 * extent, packing and dropping, and checkpoints, run against every backend on real services.
 */

const { backends } = contractBackends()

/** A small deterministic generator (mulberry32): a failing sequence replays exactly. */
const seeded = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const ids = (entries: readonly LogEntry[]) => entries.map((e) => e.id)

describe.each(backends)('$kind storage history contract', (backend) => {
  let space: Space
  let storage: DocStorage
  spaceForEachTest(backend, (opened) => {
    space = opened
    storage = opened.storage
  })

  it('packs 500 small batches into one segment holding the same entries', async () => {
    // Ids whose text order differs from their numeric order (999 < 1000, 9 < 10).
    const entries = Array.from({ length: 500 }, (_, i) => entry(`${995 + i}-${(i * 7) % 11}`))
    for (let at = 0; at < entries.length; at += 50) {
      await Promise.all(entries.slice(at, at + 50).map((e) => storage.appendLog('doc', [e])))
    }
    const files = backend.kind !== 'postgres'
    const first = entries[0]!.id
    const last = entries.at(-1)!.id
    const before = await storage.logExtent('doc')
    expect(before).toMatchObject({ first, last, entries: 500, segments: files ? 500 : 1 })

    // Up to the middle: the batches above it stay as they are.
    expect(await storage.packLog('doc', entries[249]!.id)).toBe(files ? 250 : 0)
    expect(await storage.logExtent('doc')).toMatchObject({
      entries: 500,
      segments: files ? 251 : 1,
    })
    expectLog(await storage.readLog('doc'), entries)
    expect(await storage.packLog('doc', last)).toBe(files ? 251 : 0)
    const after = await storage.logExtent('doc')
    expect(after).toMatchObject({ first, last, entries: 500, segments: 1 })
    // One header instead of 500.
    if (files) expect(after!.bytes).toBeLessThan(before!.bytes)
    else expect(after!.bytes).toBe(before!.bytes)
    expectLog(await storage.readLog('doc'), entries)
    expectLog(
      await storage.readLog('doc', { after: entries[99]!.id, upTo: entries[199]!.id }),
      entries.slice(100, 200),
    )
    // Nothing left to merge.
    expect(await storage.packLog('doc', last)).toBe(0)
    expect(await storage.packLog('doc', '99999999-0')).toBe(0)
  })

  it('drops entries up to a point, rewriting a segment that straddles it', async () => {
    const entries = Array.from({ length: 20 }, (_, i) => entry(`${i + 1}-0`))
    for (let at = 0; at < 20; at += 5) await storage.appendLog('doc', entries.slice(at, at + 5))
    await storage.packLog('doc', '10-0')
    await storage.dropLog('doc', '0-1')
    expectLog(await storage.readLog('doc'), entries)
    // Inside the segment of 1..10.
    await storage.dropLog('doc', '7-0')
    expectLog(await storage.readLog('doc'), entries.slice(7))
    expect(await storage.logExtent('doc')).toMatchObject({
      first: '8-0',
      last: '20-0',
      entries: 13,
    })
    await storage.dropLog('doc', '7-0')
    expectLog(await storage.readLog('doc'), entries.slice(7))
    expectLog(await storage.readLog('doc', { after: '9-0', upTo: '12-0' }), entries.slice(9, 12))
    // Between two ids, and at a batch's last id.
    await storage.dropLog('doc', '10-5')
    expectLog(await storage.readLog('doc'), entries.slice(10))
    await storage.dropLog('doc', '15-0')
    expectLog(await storage.readLog('doc'), entries.slice(15))
    // Everything: no log left, and the document has no history.
    await storage.dropLog('doc', '1700000000000-0')
    expect(await storage.readLog('doc')).toEqual([])
    expect(await storage.logExtent('doc')).toBeNull()
    expect(await storage.listHistory()).toEqual([])
    // Archiving again starts a log again.
    await storage.appendLog('doc', [entry('30-0')])
    expectLog(await storage.readLog('doc'), [entry('30-0')])
    expect(await storage.listHistory()).toEqual(['doc'])
  })

  it('keeps checkpoints by upTo: ascending, exact bytes, replaced when put again, dropped', async () => {
    const big = randomBytes(1024 * 1024 + 7)
    const checkpoints = [
      { upTo: '10-0', state: Uint8Array.from([1]) },
      { upTo: '9-5', state: Uint8Array.from([2]) },
      { upTo: '10-18446744073709551615', state: big },
      { upTo: '1700000000000-3', state: Uint8Array.from([0, 0]) },
    ]
    for (const c of checkpoints) await storage.putCheckpoint('doc', c)
    await storage.putCheckpoint('doc', { upTo: '9-5', state: Uint8Array.from([3]) })
    const upTos = ['9-5', '10-0', '10-18446744073709551615', '1700000000000-3']
    expect(await storage.listCheckpoints('doc')).toEqual(upTos)
    const loaded = await storage.loadCheckpoint('doc', '10-18446744073709551615')
    expect(loaded?.upTo).toBe('10-18446744073709551615')
    expectBytes(loaded?.state, big)
    expectBytes((await storage.loadCheckpoint('doc', '9-5'))?.state, Uint8Array.from([3]))
    expectBytes((await storage.loadCheckpoint('doc', '10-0'))?.state, Uint8Array.from([1]))
    expect(await storage.loadCheckpoint('doc', '9-6')).toBeNull()
    expect(await storage.loadCheckpoint('do', '10-0')).toBeNull()
    expect(await storage.listCheckpoints('doc2')).toEqual([])
    // A checkpoint is not the stored state, nor a log.
    expect(await storage.load('doc')).toBeNull()
    expect(await storage.list()).toEqual([])
    expect(await storage.logExtent('doc')).toBeNull()

    await storage.dropCheckpoints('doc', ['9-5', '1700000000000-3', '11-0'])
    await storage.dropCheckpoints('doc', [])
    expect(await storage.listCheckpoints('doc')).toEqual(['10-0', '10-18446744073709551615'])
    expect(await storage.loadCheckpoint('doc', '9-5')).toBeNull()
    // A second process sees the same.
    const other = await space.another()
    expect(await other.listCheckpoints('doc')).toEqual(['10-0', '10-18446744073709551615'])
    await storage.delete('doc')
    expect(await other.listCheckpoints('doc')).toEqual([])
  })

  it('lists documents with history, stored state or not, in order, paging', async () => {
    expect(await storage.compareAndSet('state-only', null, stored('1-0', [1]))).toBe(true)
    const cp = { upTo: '1-0', state: Uint8Array.from([1]) }
    // Names too long to escape are hashed: read from a log batch, or from a checkpoint.
    const logOnly = ['b', 'a/b', 'Z'.repeat(150)]
    const checkpointOnly = ['B', 'a', 'Y'.repeat(150)]
    for (const name of logOnly) await storage.appendLog(name, [entry('1-0'), entry('2-0')])
    for (const name of checkpointOnly) await storage.putCheckpoint(name, cp)
    await storage.appendLog('both', [entry('1-0')])
    await storage.putCheckpoint('both', cp)
    expect(await storage.compareAndSet('both', null, stored('1-0', [1]))).toBe(true)
    const sorted = ['B', 'Y'.repeat(150), 'Z'.repeat(150), 'a', 'a/b', 'b', 'both']
    expect(await storage.listHistory()).toEqual(sorted)
    expect(await storage.list()).toEqual(['both', 'state-only'])
    expect(await storage.listHistory({ after: 'a', limit: 2 })).toEqual(['a/b', 'b'])
    expect(await storage.listHistory({ after: 'both' })).toEqual([])
    const paged: string[] = []
    for (let page = await storage.listHistory({ limit: 2 }); page.length > 0;) {
      expect(page.length).toBeLessThanOrEqual(2)
      paged.push(...page)
      page = await storage.listHistory({ after: page.at(-1)!, limit: 2 })
    }
    expect(paged).toEqual(sorted)

    // Losing the last entry or checkpoint ends a document's history.
    await storage.dropLog('a/b', '2-0')
    await storage.dropLog('Z'.repeat(150), '2-0')
    await storage.dropCheckpoints('a', ['1-0'])
    await storage.dropCheckpoints('Y'.repeat(150), ['1-0'])
    await storage.delete('b')
    expect(await storage.listHistory()).toEqual(['B', 'both'])
  })

  it('reads exactly the archived entries while appends, packs, drops and reads interleave', async () => {
    const other = await space.another()
    // A sequence of its own per backend.
    const random = seeded({ fs: 1, postgres: 2, s3: 3 }[backend.kind] * 7919)
    const int = (below: number) => Math.floor(random() * below)
    const by = () => (random() < 0.5 ? storage : other)
    const model = new Map<string, LogEntry>()
    const trace: string[] = []
    let ms = 1
    const expected = (range: LogRange = {}) => normaliseLog([...model.values()], range)
    /** Ids past everything archived, ascending; text order differs from numeric order. */
    const fresh = () =>
      Array.from({ length: 1 + int(4) }, () => {
        ms += 1 + int(3)
        return entry(`${ms}-${int(3)}`)
      })
    /** An id in the log, or any id up to just past the newest. */
    const bound = () => {
      const all = expected()
      return all.length > 0 && random() < 0.7
        ? all[int(all.length)]!.id
        : `${int(ms + 2)}-${int(3)}`
    }
    const maybe = () => (random() < 0.4 ? undefined : bound())
    const expectState = async (what: string) => {
      const message = `${what}\n${trace.join('\n')}`
      expectLog(await storage.readLog('doc'), expected(), message)
      const extent = await other.logExtent('doc')
      const all = expected()
      expect(extent && [extent.first, extent.last, extent.entries], message).toEqual(
        all.length === 0 ? null : [all[0]!.id, all.at(-1)!.id, all.length],
      )
    }

    for (let step = 0; step < 80; step++) {
      const op = random()
      if (op < 0.3) {
        const batch = fresh()
        trace.push(`append ${ids(batch).join(' ')}`)
        await by().appendLog('doc', batch)
        for (const e of batch) model.set(e.id, e)
      } else if (op < 0.4) {
        // Archived again (a worker retrying), perhaps across batches already packed.
        const all = expected()
        const at = int(all.length)
        const again = all.slice(at, at + 1 + int(5))
        trace.push(`append again ${ids(again).join(' ')}`)
        await by().appendLog('doc', again)
      } else if (op < 0.55) {
        const upTo = bound()
        trace.push(`pack ${upTo}`)
        const merged = await by().packLog('doc', upTo)
        expect(merged === 0 || merged >= 2, trace.join('\n')).toBe(true)
      } else if (op < 0.7) {
        // Two processes pack at once while a reader reads and a writer archives new entries.
        const [upTo1, upTo2, batch] = [bound(), bound(), fresh()]
        trace.push(`race pack ${upTo1} / pack ${upTo2} / read / append ${ids(batch).join(' ')}`)
        const before = ids(expected())
        const [, , read] = await Promise.all([
          storage.packLog('doc', upTo1),
          other.packLog('doc', upTo2),
          storage.readLog('doc'),
          other.appendLog('doc', batch),
        ])
        const appended = new Set(ids(batch))
        expect(
          ids(read).filter((id) => !appended.has(id)),
          trace.join('\n'),
        ).toEqual(before)
        for (const e of batch) model.set(e.id, e)
      } else if (op < 0.8) {
        const upTo = bound()
        trace.push(`drop ${upTo}`)
        await by().dropLog('doc', upTo)
        for (const id of [...model.keys()]) if (compareWatermarks(id, upTo) <= 0) model.delete(id)
      } else {
        const range = { after: maybe(), upTo: maybe() }
        trace.push(`read ${range.after ?? '-'} ${range.upTo ?? '-'}`)
        expectLog(await by().readLog('doc', range), expected(range), trace.join('\n'))
      }
      await expectState(`after step ${step}`)
    }
    // The run did what it is meant to: entries were packed, dropped and are left.
    expect(trace.some((t) => t.startsWith('drop'))).toBe(true)
    expect(trace.some((t) => t.startsWith('race'))).toBe(true)
    expect(model.size).toBeGreaterThan(0)
  })
})
