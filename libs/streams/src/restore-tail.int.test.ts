import * as Y from 'yjs'
import { beforeEach, describe, expect, it } from 'vitest'
import { isAppError, ZERO_ID } from '@streambed/common'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { createDocStreams } from './doc-streams.js'
import { createKeys, type Keys, shardOf } from './keys.js'
import { restoreTail } from './restore-tail.js'

const fx = useRedisServer()

/** `n` updates of one client typing into text `t`, one per transaction. */
const typing = (client: number, n: number): Uint8Array[] => {
  const doc = new Y.Doc()
  doc.clientID = client
  const out: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => out.push(u))
  for (let i = 0; i < n; i++) doc.getText('t').insert(i, String.fromCharCode(97 + (i % 26)))
  return out
}
const textOf = (updates: readonly Uint8Array[]) => {
  const doc = new Y.Doc()
  for (const u of updates) Y.applyUpdate(doc, u)
  return doc.getText('t').toString()
}

describe('restoreTail', () => {
  let keys: Keys
  beforeEach(() => {
    keys = createKeys(uniquePrefix('restore-tail'))
  })
  const entriesOf = (updates: Uint8Array[], ms = 1_700_000_000_000) =>
    updates.map((update, i) => ({ id: `${ms + i}-0`, update }))
  const base = { above: ZERO_ID, reached: ZERO_ID, origin: 'recovery/test', queueShards: 4 }

  it('puts entries back with their ids, sets last, queues one task and leaves no clock map', async () => {
    const entries = entriesOf(typing(7, 5))
    const r = await restoreTail(fx.admin, keys, 'd', {
      ...base,
      entries,
      reached: '1700000000009-0',
    })
    expect(r).toEqual({ added: 5, present: 0, rebuilt: false, newTask: true })
    const streams = createDocStreams({ redis: fx.admin, keys, queueShards: 4 })
    const tail = await streams.readTail('d', ZERO_ID)
    expect(tail.entries.map((e) => e.id)).toEqual(entries.map((e) => e.id))
    expect(tail.entries.map((e) => e.origin)).toEqual(entries.map(() => 'recovery/test'))
    // `reached` is above the last entry: new appends go above it.
    expect(tail.last).toBe('1700000000009-0')
    const meta = await fx.admin.hgetall(keys.meta('d'))
    expect(Object.keys(meta).filter((f) => f === 'clocks' || f.startsWith('k:'))).toEqual([])
    expect(meta.task).toBe(entries[4]!.id)
    expect(await fx.admin.ttl(keys.meta('d'))).toBe(-1)
    const tasks = await fx.admin.xrange(keys.queue(shardOf('d', 4)), '-', '+')
    expect(tasks.map(([, f]) => f)).toEqual([['d', 'd', 't', entries[4]!.id]])
  })

  it('adds nothing the second time, and a later append seeds the clocks and strips known ids', async () => {
    const updates = typing(7, 6)
    const entries = entriesOf(updates.slice(0, 4))
    await restoreTail(fx.admin, keys, 'd', { ...base, entries })
    const again = await restoreTail(fx.admin, keys, 'd', { ...base, entries })
    expect(again).toEqual({ added: 0, present: 4, rebuilt: false, newTask: false })
    expect(await fx.admin.xlen(keys.queue(shardOf('d', 4)))).toBe(1)
    const streams = createDocStreams({ redis: fx.admin, keys, queueShards: 4 })
    // A client resending everything it has: only the two new updates' ids are appended.
    const appended = await streams.append('d', Y.mergeUpdates(updates), 'n/c')
    expect(appended).not.toBeNull()
    expect(await fx.admin.hget(keys.meta('d'), 'k:7')).toBe('6')
    const tail = await streams.readTail('d', ZERO_ID)
    expect(tail.entries).toHaveLength(5)
    expect(textOf(tail.entries.map((e) => e.update))).toBe('abcdef')
  })

  it('skips entries at or below the stored watermark and lowers a trim marker above it', async () => {
    const entries = entriesOf(typing(7, 4))
    await fx.admin.hset(keys.meta('d'), 'trimmed', '1800000000000-0', 'clocks', '1', 'k:7', '9')
    const r = await restoreTail(fx.admin, keys, 'd', { ...base, above: entries[1]!.id, entries })
    expect(r.added).toBe(2)
    const ids = (await fx.admin.xrange(keys.stream('d'), '-', '+')).map(([id]) => id)
    expect(ids).toEqual([entries[2]!.id, entries[3]!.id])
    const meta = await fx.admin.hgetall(keys.meta('d'))
    expect(meta.trimmed).toBe('1700000000001-1')
    expect(meta.clocks).toBeUndefined()
    expect(meta['k:7']).toBeUndefined()
  })

  it('rewrites a stream holding later entries as the union in id order', async () => {
    const entries = entriesOf(typing(7, 4))
    // The stream already has the second and a later entry (a forced restore over a live document).
    await fx.admin.xadd(
      keys.stream('d'),
      entries[1]!.id,
      'u',
      Buffer.from(entries[1]!.update),
      'o',
      'x',
    )
    await fx.admin.xadd(keys.stream('d'), '1900000000000-0', 'u', 'later', 'o', 'x')
    await fx.admin.hset(keys.meta('d'), 'last', '1900000000000-0', 'task', 'tok')
    const r = await restoreTail(fx.admin, keys, 'd', { ...base, entries })
    expect(r).toEqual({ added: 3, present: 1, rebuilt: true, newTask: false })
    const stream = (await fx.admin.xrangeBuffer(keys.stream('d'), '-', '+')) as unknown as [
      Buffer,
      Buffer[],
    ][]
    expect(stream.map(([id]) => id.toString())).toEqual([
      ...entries.map((e) => e.id),
      '1900000000000-0',
    ])
    // The entry that was there keeps its origin; the others are the backup's.
    expect(stream[1]![1]).toEqual([
      Buffer.from('u'),
      Buffer.from(entries[1]!.update),
      Buffer.from('o'),
      Buffer.from('x'),
    ])
    expect(stream[0]![1][1]).toEqual(Buffer.from(entries[0]!.update))
    expect(stream[4]![1].map(String)).toEqual(['u', 'later', 'o', 'x'])
    expect(await fx.admin.hget(keys.meta('d'), 'last')).toBe('1900000000000-0')
    expect(await fx.admin.hget(keys.meta('d'), 'task')).toBe('tok')
  })

  it('restores more entries than one script call takes', async () => {
    const updates = typing(9, 2500)
    const entries = entriesOf(updates)
    const r = await restoreTail(fx.admin, keys, 'big', { ...base, entries })
    expect(r).toMatchObject({ added: 2500, newTask: true })
    expect(await fx.admin.xlen(keys.stream('big'))).toBe(2500)
    expect(await fx.admin.xlen(keys.queue(shardOf('big', 4)))).toBe(1)
  })

  it('refuses unordered ids before writing anything', async () => {
    const [a, b] = entriesOf(typing(7, 2))
    const err = await restoreTail(fx.admin, keys, 'd', { ...base, entries: [b!, a!] }).catch(
      (e: unknown) => e,
    )
    expect(isAppError(err, 'BAD_MESSAGE')).toBe(true)
    expect(await fx.admin.exists(keys.stream('d'), keys.meta('d'))).toBe(0)
  })
})
