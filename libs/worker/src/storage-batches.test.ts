import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { isAppError } from '@streambed/common'
import { createFsStorage, type DocStorage, type StoredDoc } from '@streambed/storage'
import { createStorageBatches } from './storage-batches.js'

const doc = (watermark: string, bytes = 1): StoredDoc => ({
  watermark,
  state: new Uint8Array(bytes).fill(1),
})

/**
 * Storage that records its calls; `loses` names documents whose compare-and-set fails, `broken`
 * documents whose compare-and-set throws (and so every batch holding them).
 */
const recording = (opts: { loses?: string[]; broken?: string[] } = {}) => {
  const calls: string[] = []
  const storage = {
    load: async (d: string) => {
      calls.push(`load ${d}`)
      return doc('1-0')
    },
    loadMany: async (docs: readonly string[]) => {
      calls.push(`loadMany ${docs.join(' ')}`)
      return docs.map(() => doc('1-0'))
    },
    appendLog: async (d: string) => void calls.push(`appendLog ${d}`),
    appendLogMany: async (items: readonly { doc: string }[]) =>
      void calls.push(`appendLogMany ${items.map((i) => i.doc).join(' ')}`),
    compareAndSet: async (d: string) => {
      calls.push(`compareAndSet ${d}`)
      if (opts.broken?.includes(d)) throw new Error(`disk full at ${d}`)
      return !opts.loses?.includes(d)
    },
    compareAndSetMany: async (items: readonly { doc: string }[]) => {
      calls.push(`compareAndSetMany ${items.map((i) => i.doc).join(' ')}`)
      const broken = items.find((i) => opts.broken?.includes(i.doc))
      if (broken) throw new Error(`disk full at ${broken.doc}`)
      return items.map((i) => !opts.loses?.includes(i.doc))
    },
  }
  return { calls, storage: storage as unknown as DocStorage }
}

/** What a compaction does with its lane: load, (merge), archive, compare-and-set. */
const compaction = async (
  batches: ReturnType<typeof createStorageBatches>,
  name: string,
  opts: { before?: () => Promise<void>; skipStore?: boolean; bytes?: number } = {},
) => {
  const lane = batches.join(name)
  try {
    await opts.before?.()
    await lane.load(name)
    if (opts.skipStore) return 'skipped'
    await lane.appendLog(name, [{ id: '2-0', update: Uint8Array.from([2]) }])
    return await lane.compareAndSet(name, '1-0', doc('2-0', opts.bytes))
  } finally {
    lane.leave()
  }
}

const turn = () => new Promise<void>((r) => setImmediate(r))

describe('createStorageBatches', () => {
  it('sends the calls of lanes joined together as one call of each kind', async () => {
    const { calls, storage } = recording({ loses: ['b'] })
    const batches = createStorageBatches(storage, { maxSize: 10 })
    // `c` takes a while before it loads: the others wait for it.
    const results = await Promise.all([
      compaction(batches, 'a'),
      compaction(batches, 'b'),
      compaction(batches, 'c', { before: turn }),
    ])
    expect(results).toEqual([true, false, true])
    expect(calls).toEqual(['loadMany a b c', 'appendLogMany a b c', 'compareAndSetMany a b c'])
  })

  it('waits neither for a lane that left nor for one that stores alone', async () => {
    const { calls, storage } = recording()
    const batches = createStorageBatches(storage, { maxSize: 10 })
    const alone = async () => {
      const lane = batches.join('large')
      await lane.load('large')
      // A merge on a worker thread: this document stores on its own, when it is ready.
      lane.leave()
      await turn()
      await lane.appendLog('large', [])
      return lane.compareAndSet('large', '1-0', doc('2-0'))
    }
    const results = await Promise.all([
      compaction(batches, 'a'),
      compaction(batches, 'not-due', { skipStore: true }),
      alone(),
      compaction(batches, 'b'),
    ])
    expect(results).toEqual([true, 'skipped', true, true])
    expect(calls).toEqual([
      'loadMany large a not-due b',
      'appendLogMany a b',
      'compareAndSetMany a b',
      'appendLog large',
      'compareAndSet large',
    ])
  })

  it('makes the calls of a failed batch again one by one: only the failing document fails', async () => {
    const { calls, storage } = recording({ broken: ['b'] })
    const batches = createStorageBatches(storage, { maxSize: 10 })
    const results = await Promise.allSettled([
      compaction(batches, 'a'),
      compaction(batches, 'b'),
      compaction(batches, 'c'),
    ])
    expect(
      results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message)),
    ).toEqual([true, 'disk full at b', true])
    expect(calls.slice(0, 3)).toEqual([
      'loadMany a b c',
      'appendLogMany a b c',
      'compareAndSetMany a b c',
    ])
    expect(calls.slice(3).sort()).toEqual(['compareAndSet a', 'compareAndSet b', 'compareAndSet c'])
    calls.length = 0
    // A read that raced a compaction loads again: that load goes alone.
    const lane = batches.join('c')
    const other = batches.join('d')
    const loads = Promise.all([lane.load('c'), other.load('d')])
    await loads
    await lane.load('c')
    lane.leave()
    other.leave()
    expect(calls).toEqual(['loadMany c d', 'load c'])
  })

  it('stores alone a document whose state would take its batch past maxBytes', async () => {
    const { calls, storage } = recording()
    const batches = createStorageBatches(storage, { maxSize: 10, maxBytes: 100 })
    const results = await Promise.all([
      compaction(batches, 'a', { bytes: 40 }),
      compaction(batches, 'large', { bytes: 101 }),
      compaction(batches, 'b', { bytes: 40 }),
      // 40 + 40 + 40 > 100: the third goes alone too.
      compaction(batches, 'c', { bytes: 40 }),
      compaction(batches, 'd', { bytes: 20 }),
    ])
    expect(results).toEqual([true, true, true, true, true])
    expect(calls.filter((c) => c.startsWith('compareAndSet')).sort()).toEqual([
      'compareAndSet c',
      'compareAndSet large',
      'compareAndSetMany a b d',
    ])
    expect(calls.filter((c) => !c.startsWith('compareAndSet'))).toEqual([
      'loadMany a large b c d',
      'appendLogMany a large b c d',
    ])
  })

  it('stores the other documents of a batch on real storage when one cannot be stored', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'streambed-batches-'))
    try {
      const fs = await createFsStorage({ dir })
      // A file where the document's state folder belongs: its state cannot be written.
      await writeFile(join(dir, 'v1', 'docs', 'blocked'), 'not a folder')
      const batched: string[] = []
      const storage: DocStorage = {
        ...fs,
        compareAndSetMany: (items) => {
          batched.push(items.map((i) => i.doc).join(' '))
          return fs.compareAndSetMany(items)
        },
      }
      const batches = createStorageBatches(storage, { maxSize: 10 })
      const store = async (name: string) => {
        const lane = batches.join(name)
        try {
          expect(await lane.load(name)).toBeNull()
          await lane.appendLog(name, [{ id: '2-0', update: Uint8Array.from([2]) }])
          return await lane.compareAndSet(name, null, doc('2-0'))
        } finally {
          lane.leave()
        }
      }
      const results = await Promise.allSettled(['a', 'blocked', 'c'].map(store))
      expect(batched).toEqual(['a blocked c'])
      expect(results.map((r) => r.status === 'fulfilled' && r.value)).toEqual([true, false, true])
      const failure = results[1]?.status === 'rejected' ? results[1].reason : null
      expect(isAppError(failure, 'STORAGE_UNAVAILABLE')).toBe(true)
      expect((await fs.loadMany(['a', 'blocked', 'c'])).map((d) => d?.watermark)).toEqual([
        '2-0',
        undefined,
        '2-0',
      ])
      expect((await fs.readLog('c')).map((e) => e.id)).toEqual(['2-0'])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('starts a new batch past maxSize, for a document already in it, and in a later turn', async () => {
    const { calls, storage } = recording()
    const batches = createStorageBatches(storage, { maxSize: 2 })
    const first = [
      compaction(batches, 'a'),
      compaction(batches, 'b'),
      compaction(batches, 'c'),
      compaction(batches, 'c'),
    ]
    await turn()
    await Promise.all([...first, compaction(batches, 'd')])
    expect(calls.filter((c) => c.startsWith('load'))).toEqual([
      'loadMany a b',
      'load c',
      'load c',
      'load d',
    ])
    // maxSize 1: every call as the single-document methods make it.
    calls.length = 0
    const alone = createStorageBatches(storage, { maxSize: 1 })
    await Promise.all([compaction(alone, 'e'), compaction(alone, 'f')])
    expect(calls.sort()).toEqual(
      ['load', 'appendLog', 'compareAndSet'].flatMap((k) => [`${k} e`, `${k} f`]).sort(),
    )
  })
})
