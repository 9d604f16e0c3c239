import { describe, expect, it } from 'vitest'
import { compareIds, nextId } from '@streambed/common'
import { captureUpdate, uniquePrefix, useRedisServer } from '@streambed/testing'
import { createDocStreams } from './doc-streams.js'
import { createKeys, shardOf } from './keys.js'
import { CONSUMER_GROUP, createTaskQueue } from './task-queue.js'

const fx = useRedisServer()

const update = (text: string): Uint8Array => captureUpdate((d) => d.getText('t').insert(0, text))

const setup = async (shards = 2) => {
  const keys = createKeys(uniquePrefix('q'))
  const streams = createDocStreams({ redis: fx.admin, keys, queueShards: shards })
  const queue = createTaskQueue({ redis: fx.admin, blocking: fx.blocking, keys, shards })
  await queue.ensureGroups()
  return { keys, streams, queue }
}

describe('task queue', () => {
  it('creates one task per document however many appends, with the first entry as token', async () => {
    const { streams, queue, keys } = await setup()
    const first = (await streams.append('doc-a', update('1'), 'n/1'))!
    const second = (await streams.append('doc-a', update('2'), 'n/1'))!
    expect(first.newTask).toBe(true)
    expect(second.newTask).toBe(false)
    const tasks = await queue.read('w1', 10, 100)
    expect(tasks).toEqual([
      { shard: shardOf('doc-a', 2), entryId: expect.any(String), doc: 'doc-a', token: first.id },
    ])
    expect(await queue.read('w1', 10, 50)).toEqual([])
    expect(await fx.admin.hget(keys.meta('doc-a'), 'task')).toBe(first.id)
  })

  it('returns every task a multi-shard read delivered (COUNT is per stream)', async () => {
    const { streams, queue } = await setup(4)
    const docs = Array.from({ length: 40 }, (_, i) => `spread-${i}`)
    for (const d of docs) await streams.append(d, update(d), 'n/1')
    const tasks = await queue.read('w1', 8, 100)
    // Each of the 4 shards is asked for 2: about 8 tasks, and the caller gets all it was given.
    expect(tasks.length).toBeGreaterThanOrEqual(4)
    expect(tasks.length).toBeLessThanOrEqual(8)
    expect((await queue.depth()).pending).toBe(tasks.length)
  })

  it('settles with a delay into the delayed set and promotes it when due', async () => {
    const { streams, queue } = await setup()
    await streams.append('doc-b', update('x'), 'n/1')
    const [task] = await queue.read('w1', 10, 100)
    expect(await queue.settle(task!, 300)).toBe(true)
    expect((await queue.depth()).delayed).toBe(1)
    expect(await queue.promote()).toBe(0)
    await new Promise((r) => setTimeout(r, 350))
    expect(await queue.promote()).toBe(1)
    const again = await queue.read('w1', 10, 100)
    expect(again.map((t) => [t.doc, t.token])).toEqual([[task!.doc, task!.token]])
    expect(await queue.settle(again[0]!, null)).toBe(true)
    expect(await queue.depth()).toEqual({ queued: 0, delayed: 0, pending: 0, oldestPendingMs: 0 })
  })

  it('lets another consumer take over a task its holder stopped working on', async () => {
    const { streams, queue, keys } = await setup()
    await streams.append('doc-c', update('x'), 'n/1')
    const [held] = await queue.read('dead-worker', 10, 100)
    expect(held).toBeDefined()
    expect(await queue.claim('w2', 1000, 10)).toEqual([])
    await new Promise((r) => setTimeout(r, 250))
    const claimed = await queue.claim('w2', 200, 10)
    expect(claimed.map((t) => [t.doc, t.entryId])).toEqual([['doc-c', held!.entryId]])
    const [entry] = (await fx.admin.xpending(
      keys.queue(held!.shard),
      CONSUMER_GROUP,
      '-',
      '+',
      10,
    )) as [string, string][]
    expect(entry?.[1]).toBe('w2')
  })
})

describe('finish', () => {
  it('trims what storage holds, keeps younger entries, and marks the trim point', async () => {
    const { streams, queue, keys } = await setup()
    const a = (await streams.append('doc', update('a'), 'n/1'))!
    const b = (await streams.append('doc', update('b'), 'n/1'))!
    // Stored up to a, lifetime 0: only a goes; b is after X, so the document is dirty.
    expect(await queue.finish('doc', a.id, a.id, 0, 60_000)).toEqual({ kind: 'dirty' })
    expect((await fx.admin.xrange(keys.stream('doc'), '-', '+')).map(([id]) => id)).toEqual([b.id])
    expect(await fx.admin.hget(keys.meta('doc'), 'trimmed')).toBe(nextId(a.id))
    // Stored up to b but a long lifetime: nothing trimmed yet, come back later.
    expect(await queue.finish('doc', a.id, b.id, 60_000, 60_000)).toEqual({
      kind: 'wait',
      oldestId: b.id,
    })
    expect(await fx.admin.xlen(keys.stream('doc'))).toBe(1)
    await new Promise((r) => setTimeout(r, 5))
    // Lifetime over: the stream is deleted and the task cleared; the meta hash stays as a tombstone.
    expect(await queue.finish('doc', a.id, b.id, 0, 60_000)).toEqual({ kind: 'done' })
    expect(await fx.admin.exists(keys.stream('doc'))).toBe(0)
    expect(await fx.admin.hget(keys.meta('doc'), 'task')).toBeNull()
    expect(await fx.admin.hget(keys.meta('doc'), 'last')).toBe(b.id)
    expect(await fx.admin.pttl(keys.meta('doc'))).toBeGreaterThan(50_000)
    // A stale token changes nothing.
    expect(await queue.finish('doc', 'bogus', b.id, 0, 60_000)).toEqual({ kind: 'stale' })
  })

  it("puts new ids above the caller's floor even when Redis' clock is behind it", async () => {
    const { streams } = await setup()
    const future = `${Date.now() + 3_600_000}-7`
    const a = (await streams.append('floored', update('a'), 'n/1', { floor: future }))!
    expect(a.id).toBe(future.replace(/-7$/, '-8'))
    const b = (await streams.append('floored', update('b'), 'n/1'))!
    expect(compareIds(b.id, a.id)).toBeGreaterThan(0)
    expect(b.prev).toBe(a.id)
  })

  it('never leaves a document with entries but no task (append after the stream was deleted)', async () => {
    const { streams, queue, keys } = await setup()
    const a = (await streams.append('doc', update('a'), 'n/1'))!
    await queue.read('w', 10, 100)
    // An entry is trimmed once strictly older than the lifetime (here 0): let a millisecond pass.
    await new Promise((r) => setTimeout(r, 5))
    expect(await queue.finish('doc', a.id, a.id, 0, 60_000)).toEqual({ kind: 'done' })
    // The write that lands right after the deletion makes a new task and keeps ids increasing.
    const b = (await streams.append('doc', update('b'), 'n/1'))!
    expect(b.newTask).toBe(true)
    expect(b.prev).toBe(a.id)
    expect(await fx.admin.hget(keys.meta('doc'), 'task')).toBe(b.id)
    expect(await fx.admin.pttl(keys.meta('doc'))).toBe(-1)
    const tasks = await queue.read('w', 10, 100)
    expect(tasks.map((t) => t.token)).toEqual([b.id])
    // And a read after the tombstone sees no hole: storage would hold a, the stream holds b.
    const tail = await streams.readTail('doc', a.id)
    expect(tail.entries.map((e) => e.id)).toEqual([b.id])
    expect(tail.trimmed).toBe(nextId(a.id))
  })
})

describe('after Redis lost its data', () => {
  it('recreates the consumer groups instead of failing forever (NOGROUP)', async () => {
    const { streams, queue, keys } = await setup(2)
    await streams.append('doc', update('a'), 'n/1')
    expect(await queue.read('w', 10, 100)).toHaveLength(1)
    // As after a restart without persistence: everything gone, then a new write arrives.
    for (const k of await fx.admin.keys(`${keys.prefix}:*`)) await fx.admin.del(k)
    await streams.append('doc', update('b'), 'n/1')
    const tasks = await queue.read('w', 10, 100)
    expect(tasks.map((t) => t.doc)).toEqual(['doc'])
    expect(await queue.claim('w', 0, 10)).toHaveLength(1)
  })
})
