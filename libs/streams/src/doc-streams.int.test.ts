import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { isAppError } from '@streambed/common'
import { inspectUpdate, mergeAll } from '@streambed/protocol'
import { type DocStorage, createFsStorage } from '@streambed/storage'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { createDocStreams } from './doc-streams.js'
import { type Keys, createKeys } from './keys.js'
import { ZERO_ID } from '@streambed/common'

const fx = useRedisServer()

/** The updates `edits` makes on a document whose client id is `client`, one per transaction. */
const updatesOf = (client: number, edits: (doc: Y.Doc) => void, base?: Uint8Array) => {
  const doc = new Y.Doc()
  doc.clientID = client
  if (base) Y.applyUpdate(doc, base)
  const updates: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => updates.push(u))
  edits(doc)
  return updates
}
const contentOf = (doc: Y.Doc) => ({
  t: doc.getText('t').toString(),
  m: doc.getMap('m').toJSON(),
})
/** What a joiner gets: the parts merged (mergeAll, as nodes answer a sync). */
const jsonOf = (parts: readonly Uint8Array[]) => {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, mergeAll(parts))
  return contentOf(doc)
}
/** What a live client gets: each update applied in order. */
const appliedInOrder = (updates: readonly Uint8Array[]) => {
  const doc = new Y.Doc()
  for (const u of updates) Y.applyUpdate(doc, u)
  return contentOf(doc)
}

describe('DocStreams.append', () => {
  let dir: string
  let storage: DocStorage
  let keys: Keys
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'streambed-append-'))
    storage = await createFsStorage({ dir })
    keys = createKeys(uniquePrefix('append'))
  })
  afterEach(() => rm(dir, { recursive: true, force: true }))
  const streamsOf = (gapWaitMs = 1) =>
    createDocStreams({ redis: fx.admin, keys, queueShards: 1, storage, gapWaitMs })
  const entries = async () =>
    (await streamsOf().readTail('d', ZERO_ID)).entries.map((e) => e.update)

  it('keeps the first content of an id; only the new ids of a later update are appended', async () => {
    const streams = streamsOf()
    const [evil] = updatesOf(5555, (d) => d.getMap('m').set('k', 'evil'))
    const [text] = updatesOf(5555, (d) => d.getText('t').insert(0, 'AAAA'))
    expect(await streams.append('d', evil!, 'x/1')).not.toBeNull()
    // Clock 0 is taken: its content stays "evil". Clocks 1-3 are new ids and are kept, as Yjs
    // itself keeps them when it applies the update.
    expect(await streams.append('d', text!, 'x/2')).not.toBeNull()
    const stored = await entries()
    expect(stored).toHaveLength(2)
    expect(inspectUpdate(stored[1]!).clients.get(5555)).toEqual([{ from: 1, to: 4 }])
    // Every reader gets the stream: a joiner (merged) agrees with a live client that applied its
    // entries in order. (Only the writer applied the update as it sent it.)
    expect(jsonOf(stored)).toEqual(appliedInOrder(stored))
  })

  it('strips the known part of an update that overlaps what the document has', async () => {
    const streams = streamsOf()
    const updates = updatesOf(7, (d) => {
      d.getText('t').insert(0, 'ab')
      d.getText('t').insert(2, 'cd')
    })
    await streams.append('d', updates[0]!, 'x/1')
    // The client resends everything (a step 2 against an old state vector).
    await streams.append('d', Y.mergeUpdates(updates), 'x/1')
    const stored = await entries()
    expect(stored).toHaveLength(2)
    expect(inspectUpdate(stored[1]!).clients.get(7)).toEqual([{ from: 2, to: 4 }])
    expect(jsonOf(stored)).toEqual({ t: 'abcd', m: {} })
    // Sent once more, all of it is known: nothing is appended.
    expect(await streams.append('d', Y.mergeUpdates(updates), 'x/1')).toBeNull()
    expect(await entries()).toHaveLength(2)
  })

  it('waits for an append in flight that fills the gap before an update', async () => {
    const streams = streamsOf(5)
    const updates = updatesOf(9, (d) => {
      for (let i = 0; i < 3; i++) d.getText('t').insert(i, String(i))
    })
    await streams.append('d', updates[0]!, 'x/1')
    // The third arrives before the second (say, the second needed a retry).
    const third = streams.append('d', updates[2]!, 'x/1')
    await new Promise((r) => setTimeout(r, 20))
    await streams.append('d', updates[1]!, 'x/1')
    await third
    expect(jsonOf(await entries())).toEqual({ t: '012', m: {} })
  })

  it('refuses an update that would leave a gap in a client’s clocks', async () => {
    const streams = streamsOf()
    const updates = updatesOf(11, (d) => {
      for (let i = 0; i < 3; i++) d.getText('t').insert(i, String(i))
    })
    await streams.append('d', updates[0]!, 'x/1')
    const err = await streams.append('d', updates[2]!, 'x/1').catch((e: unknown) => e)
    expect(isAppError(err, 'CLOCK_GAP')).toBe(true)
    expect((err as Error).message).toMatch(/skips clocks of client 11 in d/)
    expect(await entries()).toHaveLength(1)
  })

  it('seeds the clocks of a compacted document from storage', async () => {
    const streams = streamsOf()
    const [first, second] = updatesOf(13, (d) => {
      d.getMap('m').set('k', 'stored')
      d.getMap('m').set('j', 'later')
    })
    await storage.compareAndSet('d', null, { state: first!, watermark: '1-0' })
    // Clock 0 of client 13 is in storage, not in the stream: a reuse of it is stripped all the same.
    const [reuse] = updatesOf(13, (d) => d.getMap('m').set('k', 'evil'))
    expect(await streams.append('d', reuse!, 'x/1')).toBeNull()
    expect(await streams.append('d', second!, 'x/1')).not.toBeNull()
    expect(jsonOf([first!, ...(await entries())])).toEqual({
      t: '',
      m: { k: 'stored', j: 'later' },
    })
  })

  it('appends a burst of one writer on a new document, in order', async () => {
    const streams = streamsOf()
    const updates = updatesOf(15, (d) => {
      for (let i = 0; i < 200; i++) d.getText('t').insert(i, 'x')
    })
    await Promise.all(updates.map((u) => streams.append('d', u, 'x/1')))
    expect((await entries()).length).toBe(200)
    expect(jsonOf(await entries())).toEqual({ t: 'x'.repeat(200), m: {} })
  })

  it('appends a deletion of content it has not seen without any clock check', async () => {
    const streams = streamsOf()
    const [insert] = updatesOf(17, (d) => d.getText('t').insert(0, 'abc'))
    const doc = new Y.Doc()
    Y.applyUpdate(doc, insert!)
    const deletions: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => deletions.push(u))
    doc.getText('t').delete(0, 1)
    expect(inspectUpdate(deletions[0]!).clients.size).toBe(0)
    expect(await streams.append('d', deletions[0]!, 'x/1')).not.toBeNull()
    expect(await streams.append('d', insert!, 'x/1')).not.toBeNull()
    expect(jsonOf(await entries())).toEqual({ t: 'bc', m: {} })
  })
})
