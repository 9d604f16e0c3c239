import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { isAppError, nextId } from '@streambed/common'
import { type DocStorage, createFsStorage } from '@streambed/storage'
import { captureUpdate, uniquePrefix, useRedisServer } from '@streambed/testing'
import { readDocument, partsOf } from './doc-read.js'
import { createDocStreams } from './doc-streams.js'
import type { DocStreams } from './tail.js'
import { type Keys, createKeys } from './keys.js'

const fx = useRedisServer()
const insert = (text: string) => captureUpdate((d) => d.getText('t').insert(0, text))
const textOf = (parts: Uint8Array[]) => {
  const doc = new Y.Doc()
  for (const p of parts) Y.applyUpdate(doc, p)
  return doc.getText('t').toString()
}

describe('readDocument', () => {
  let dir: string
  let storage: DocStorage
  let keys: Keys
  let streams: DocStreams
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'streambed-read-'))
    storage = await createFsStorage({ dir })
    keys = createKeys(uniquePrefix('read'))
    streams = createDocStreams({ redis: fx.admin, keys, queueShards: 1 })
  })
  afterEach(() => rm(dir, { recursive: true, force: true }))

  it('reads the stream alone when nothing is stored, up to the last entry', async () => {
    await streams.append('d', insert('a'), 'n/1')
    const { id } = (await streams.append('d', insert('b'), 'n/1'))!
    const read = await readDocument(storage, streams, 'd')
    expect(read.stored).toBeNull()
    expect(read.tail.entries).toHaveLength(2)
    expect(read.upTo).toBe(id)
    expect(textOf(partsOf(read)).split('').sort().join('')).toBe('ab')
  })

  it('puts the stored state first and reads only entries after its watermark', async () => {
    const first = (await streams.append('d', insert('x'), 'n/1'))!
    await storage.compareAndSet('d', null, { state: insert('x'), watermark: first.id })
    const second = (await streams.append('d', insert('y'), 'n/1'))!
    const read = await readDocument(storage, streams, 'd')
    expect(read.stored?.watermark).toBe(first.id)
    expect(read.tail.entries.map((e) => e.id)).toEqual([second.id])
    expect(partsOf(read)).toHaveLength(2)
  })

  it('is up to the watermark when storage is ahead of an empty stream', async () => {
    await storage.compareAndSet('d', null, { state: insert('s'), watermark: '5000-3' })
    const read = await readDocument(storage, streams, 'd')
    expect(read.tail.entries).toHaveLength(0)
    expect(read.upTo).toBe('5000-3')
  })

  it('loads storage again when entries after the watermark were trimmed meanwhile', async () => {
    const a = (await streams.append('d', insert('a'), 'n/1'))!
    const b = (await streams.append('d', insert('b'), 'n/1'))!
    await storage.compareAndSet('d', null, { state: insert('a'), watermark: a.id })
    let loads = 0
    const read = await readDocument(storage, streams, 'd', {
      afterLoad: async () => {
        if (++loads > 1) return
        // A worker stores up to b and trims both entries between our load and our stream read.
        await storage.compareAndSet('d', a.id, { state: insert('ab'), watermark: b.id })
        await fx.admin.xtrim(keys.stream('d'), 'MINID', nextId(b.id))
        await fx.admin.hset(keys.meta('d'), 'trimmed', nextId(b.id))
      },
    })
    expect(loads).toBe(2)
    expect(read.stored?.watermark).toBe(b.id)
    expect(read.tail.entries).toHaveLength(0)
  })

  it('gives up with STREAM_GAP when every attempt finds a hole', async () => {
    await storage.compareAndSet('d', null, { state: insert('a'), watermark: '1000-0' })
    await fx.admin.hset(keys.meta('d'), 'trimmed', '2000-0')
    const err = await readDocument(storage, streams, 'd', { maxAttempts: 3 }).catch(
      (e: unknown) => e,
    )
    expect(isAppError(err, 'STREAM_GAP')).toBe(true)
  })

  it('reports a failing storage as STORAGE_UNAVAILABLE', async () => {
    const broken = { load: () => Promise.reject(new Error('disk on fire')) }
    const err = await readDocument(broken, streams, 'd').catch((e: unknown) => e)
    expect(isAppError(err, 'STORAGE_UNAVAILABLE')).toBe(true)
    expect((err as Error).message).toBe('load d: disk on fire')
  })
})
