import * as Y from 'yjs'
import { Registry } from 'prom-client'
import { describe, expect, it, vi } from 'vitest'
import { type ErrorCode, describeError } from '@streambed/common'
import { createSyncBaseline, mergeAll } from '@streambed/protocol'
import { createDocStreams, createKeys, ZERO_ID } from '@streambed/streams'
import { captureUpdate, uniquePrefix, useRedisServer } from '@streambed/testing'
import type { Grant } from './auth.js'
import { createNodeMetrics } from './metrics.js'
import { fakeConnection } from './testing/fake-socket.js'
import { WritePath, type WritePathOptions } from './write-path.js'

const fx = useRedisServer()

const setup = (over: Partial<WritePathOptions> = {}) => {
  const keys = createKeys(uniquePrefix('write'))
  const streams = createDocStreams({ redis: fx.admin, keys, queueShards: 1 })
  const metrics = createNodeMetrics(new Registry())
  const rejected: ErrorCode[] = []
  const writes = new WritePath({
    streams,
    metrics,
    maxInFlightUpdates: 16,
    maxQueuedBytes: 1 << 20,
    lastSeenId: () => ZERO_ID,
    reject: (_conn, err) => rejected.push(describeError(err).code),
    ...over,
  })
  const connect = (grant: Grant = { access: 'write', mayDelete: false, subject: undefined }) =>
    fakeConnection({ grant })
  const entries = async () => (await streams.readTail('d', ZERO_ID)).entries
  return { writes, metrics, rejected, connect, entries }
}

const insert = (text: string) => captureUpdate((d) => d.getText('t').insert(0, text))
const textOf = (updates: Uint8Array[]) => {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, mergeAll(updates))
  return doc.getText('t').toString()
}

describe('WritePath', () => {
  it('appends an update with the connection as its origin', async () => {
    const { writes, connect, entries } = setup()
    const { conn } = connect()
    writes.update(conn, insert('hello'))
    await writes.settled()
    const [e] = await entries()
    expect(e?.origin).toBe(conn.origin)
    expect(textOf([e!.update])).toBe('hello')
  })

  it('merges updates queued behind a full set of in-flight appends into one entry', async () => {
    const { writes, connect, entries, metrics } = setup({ maxInFlightUpdates: 1 })
    const { conn } = connect()
    writes.update(conn, insert('a'))
    writes.update(conn, insert('b'))
    writes.update(conn, insert('c'))
    await writes.settled()
    const appended = await entries()
    expect(appended).toHaveLength(2)
    expect(textOf([appended[0]!.update])).toBe('a')
    expect(textOf([appended[1]!.update]).split('').sort().join('')).toBe('bc')
    expect((await metrics.updatesAppended.get()).values[0]?.value).toBe(3)
  })

  it('rejects OVERLOADED (4529) when queued bytes pass the limit', async () => {
    const { writes, connect, rejected } = setup({ maxInFlightUpdates: 1, maxQueuedBytes: 40 })
    const { conn } = connect()
    writes.update(conn, insert('first'))
    writes.update(conn, insert('x'.repeat(10)))
    expect(rejected).toEqual([])
    writes.update(conn, insert('y'.repeat(40)))
    expect(rejected).toEqual(['OVERLOADED'])
    await writes.settled()
  })

  it('does not append a step 2 that adds nothing to the sync answer, but appends news', async () => {
    const { writes, connect, entries, metrics } = setup()
    const { conn } = connect()
    const known = insert('known')
    conn.setBaseline(createSyncBaseline(known), 60_000)
    writes.step2(conn, known)
    await writes.settled()
    expect(await entries()).toHaveLength(0)
    expect((await metrics.redundantUpdates.get()).values[0]?.value).toBe(1)
    // The baseline is used once: a step 2 with news is appended.
    conn.setBaseline(createSyncBaseline(known), 60_000)
    writes.step2(conn, insert('new'))
    await writes.settled()
    expect(await entries()).toHaveLength(1)
  })

  it('tells a read-only connection once and appends nothing', async () => {
    const { writes, connect, entries } = setup()
    const { conn, socket } = connect({ access: 'read', mayDelete: false, subject: 'r' })
    writes.update(conn, insert('a'))
    writes.update(conn, insert('b'))
    await writes.settled()
    expect(await entries()).toHaveLength(0)
    expect(socket.messages().filter((m) => m.kind === 'auth')).toHaveLength(1)
  })

  it('throws BAD_MESSAGE on an update that does not decode, and appends nothing', async () => {
    const { writes, connect, entries } = setup()
    const { conn } = connect()
    expect(() => writes.update(conn, new Uint8Array([1, 2, 3, 250]))).toThrow(
      /not a valid Yjs update/,
    )
    expect(await entries()).toHaveLength(0)
  })

  it('appends what was queued when the connection closed', async () => {
    const { writes, connect, entries } = setup({ maxInFlightUpdates: 1 })
    const { conn } = connect()
    writes.update(conn, insert('a'))
    writes.update(conn, insert('b'))
    conn.markClosed()
    writes.flush(conn)
    await vi.waitFor(async () => expect(await entries()).toHaveLength(2))
    await writes.settled()
    expect(await entries()).toHaveLength(2)
  })

  it('keeps new ids above the highest id the node saw of the document', async () => {
    const future = `${Date.now() + 3_600_000}-5`
    const { writes, connect, entries } = setup({ lastSeenId: () => future })
    const { conn } = connect()
    writes.update(conn, insert('a'))
    await writes.settled()
    const [e] = await entries()
    expect(e?.id).toBe(`${future.split('-')[0]}-6`)
  })
})
