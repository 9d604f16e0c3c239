/**
 * StructureGuard (decision 0014) with real appends to Redis: the races between the node's copy of
 * a document and the stream. A second DocStreams without a guard plays another node, whose
 * entries this node has not delivered yet.
 */
import * as Y from 'yjs'
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { isAppError, silentLogger } from '@streambed/common'
import { inspectUpdate } from '@streambed/protocol'
import { createDocStreams, createKeys, readDocument, partsOf } from '@streambed/streams'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { createNodeMetrics } from './metrics.js'
import { StructureGuard } from './structure-guard.js'

const fx = useRedisServer()
const noStorage = { load: () => Promise.resolve(null) }

const setup = (opts: { maxBytes?: number } = {}) => {
  const keys = createKeys(uniquePrefix('guard'))
  const streams = createDocStreams({ redis: fx.admin, keys, queueShards: 1 })
  const metrics = createNodeMetrics(new Registry())
  const guard = new StructureGuard({
    read: (doc) => readDocument(noStorage, streams, doc),
    readTail: (doc, after) => streams.readTail(doc, after),
    isServed: () => true,
    metrics,
    logger: silentLogger(),
    missingWaitMs: 2,
    missingAttempts: 9,
    ...opts,
  })
  /** Appends through the guard, as a node's write path does. */
  const write = (doc: string, update: Uint8Array) =>
    streams.append(doc, update, 'n/1', { shape: inspectUpdate(update), guard })
  /** Appends as another node would (no check here, not delivered to this node's copy). */
  const elsewhere = (doc: string, update: Uint8Array) => streams.append(doc, update, 'n/2')
  /** Every reader's view: the stream applied in order, and the same read back from its encoding. */
  const views = async (doc: string) => {
    const live = new Y.Doc()
    for (const part of partsOf(await readDocument(noStorage, streams, doc)))
      Y.applyUpdate(live, part)
    const read = new Y.Doc()
    Y.applyUpdate(read, Y.encodeStateAsUpdate(live))
    return [live.getText('t').toString(), read.getText('t').toString()]
  }
  return { guard, metrics, write, elsewhere, views }
}

/** The updates of `edits` by a document with client id `client`, one per edit. */
const edits = (client: number, ...steps: ((t: Y.Text) => void)[]): Uint8Array[] => {
  const doc = new Y.Doc()
  doc.clientID = client
  const out: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => out.push(u))
  for (const step of steps) step(doc.getText('t'))
  return out
}

/** One item of client `client` at clock 0, typed where `base` (applied first) places it. */
const typedAfter = (client: number, base: Uint8Array[], at: number, text: string) => {
  const doc = new Y.Doc()
  doc.clientID = client
  for (const u of base) Y.applyUpdate(doc, u)
  const sv = Y.encodeStateVector(doc)
  doc.getText('t').insert(at, text)
  return Y.encodeStateAsUpdate(doc, sv)
}

describe('StructureGuard', () => {
  it('an update naming an in-flight update’s items waits for it, and is judged by what the stream kept', async () => {
    const { write, elsewhere, views } = setup()
    // Client 7's clocks 0-3 as the stream gets them first (another node): "abcd", in order.
    const kept = Y.mergeUpdates(
      edits(
        7,
        (t) => t.insert(0, 'a'),
        (t) => t.insert(1, 'b'),
        (t) => t.insert(2, 'c'),
        (t) => t.insert(3, 'd'),
      ),
    )
    // The same ids with other content, sent here: each typed at the start, "dcba".
    const reused = edits(
      7,
      (t) => t.insert(0, 'a'),
      (t) => t.insert(0, 'b'),
      (t) => t.insert(0, 'c'),
      (t) => t.insert(0, 'd'),
    )
    const reusedAll = Y.mergeUpdates(reused)
    // Between 7:3 and 7:2 in the reused order: right in "dcba", contradictory in "abcd".
    const between = typedAfter(9, reused, 1, 'Z')
    const base = edits(5, (t) => t.insert(0, '.'))[0]!
    await write('d', base)
    await elsewhere('d', kept)
    // This node's copy has not seen `kept`: it takes `reusedAll` as new and `between` as fine,
    // but `between` waits for `reusedAll`'s answer, which Redis stripped (its ids were taken).
    const [first, second] = await Promise.allSettled([write('d', reusedAll), write('d', between)])
    expect(first.status).toBe('fulfilled')
    expect(second.status).toBe('rejected')
    const err = (second as PromiseRejectedResult).reason as Error
    expect(isAppError(err, 'BAD_MESSAGE')).toBe(true)
    expect(err.message).toMatch(/in an order the document contradicts/)
    const [live, read] = await views('d')
    expect(live).toBe(read)
  })

  it('a resync answer holding the clocks an update waits for is not held up by it', async () => {
    const { write, views } = setup()
    const [ab, cd, ef] = edits(
      11,
      (t) => t.insert(0, 'ab'),
      (t) => t.insert(2, 'cd'),
      (t) => t.insert(4, 'ef'),
    )
    await write('r', ab!)
    // The client typed "ef" after "cd", whose append was lost: "ef" waits for clocks 2-3...
    const started = performance.now()
    const waiting = write('r', ef!)
    await new Promise((r) => setTimeout(r, 20))
    // ... which its sync answer brings, with "ef" again.
    const resync = write('r', Y.mergeUpdates([cd!, ef!]))
    await expect(resync).resolves.not.toBeNull()
    await expect(waiting).resolves.toBeNull()
    // Both settled as soon as the resync went in, not after the wait for missing items.
    expect(performance.now() - started).toBeLessThan(500)
    expect(await views('r')).toEqual(['abcdef', 'abcdef'])
  })

  it('an update naming items nobody sends is refused with CLOCK_GAP; the next update still goes in', async () => {
    const { guard, write, views } = setup()
    const [ab, , ef] = edits(
      12,
      (t) => t.insert(0, 'ab'),
      (t) => t.insert(2, 'cd'),
      (t) => t.insert(4, 'ef'),
    )
    await write('g', ab!)
    const err = await write('g', ef!).catch((e: unknown) => e)
    expect(isAppError(err, 'CLOCK_GAP')).toBe(true)
    expect((err as Error).message).toMatch(/skips clocks of client 12/)
    // The copy that held the refused update was dropped; the next writer is checked afresh.
    expect(guard.size).toBe(0)
    await write('g', typedAfter(13, [ab!], 2, '!'))
    expect(await views('g')).toEqual(['ab!', 'ab!'])
    expect(guard.size).toBe(1)
  })

  it('holds copies up to maxBytes, dropping the least recently written; a dropped one is read again', async () => {
    const { guard, metrics, write, views } = setup({ maxBytes: 150 })
    const docs = ['x', 'y', 'z']
    const typed = docs.map((_, i) =>
      edits(
        20 + i,
        (t) => t.insert(0, 'a'.repeat(100)),
        (t) => t.insert(100, 'b'),
      ),
    )
    for (const [i, doc] of docs.entries()) await write(doc, typed[i]![0]!)
    // Each copy holds about 120 bytes: only the newest fits.
    expect(guard.size).toBe(1)
    const drops = async () =>
      (await metrics.structureDrops.get()).values.find((v) => v.labels.reason === 'budget')?.value
    expect(await drops()).toBe(2)
    // The first document's next write reads it again and is checked as ever.
    await write('x', typed[0]![1]!)
    expect(await views('x')).toEqual(['a'.repeat(100) + 'b', 'a'.repeat(100) + 'b'])
    expect(guard.size).toBe(1)
    expect(await drops()).toBe(3)
  })
})
