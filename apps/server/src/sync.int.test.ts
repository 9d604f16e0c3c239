import * as Y from 'yjs'
import { describe, expect, it, vi } from 'vitest'
import { encodeSyncStep1, decodeMessage } from '@streambed/protocol'
import {
  connectClient,
  connectRaw,
  docContent,
  uniquePrefix,
  type TestClient,
  useRedisServer,
} from '@streambed/testing'
import { startTestNode } from './testing/test-node.js'

const redis = useRedisServer()

const env = (prefix: string) => ({ REDIS_URL: redis.url, REDIS_PREFIX: prefix })
const streamLength = (prefix: string, doc: string) => redis.admin.xlen(`${prefix}:v1:{${doc}}:s`)

const editConcurrently = (client: TestClient, i: number, rounds: number) => {
  for (let r = 0; r < rounds; r++) {
    client.doc.transact(() => {
      client.doc.getText('text').insert(0, `c${i}r${r};`)
      client.doc.getMap('map').set(`k${i}-${r}`, { by: i, round: r })
      client.doc.getArray('array').push([i * 1000 + r])
      if (r % 3 === 2) client.doc.getText('text').delete(0, 2)
    })
  }
}

describe('cross-node sync', () => {
  it('converges clients on two nodes editing text, map and array concurrently', async () => {
    const prefix = uniquePrefix('converge')
    await using a = await startTestNode(env(prefix))
    await using b = await startTestNode(env(prefix))
    const clients = [
      connectClient(a.url, 'doc'),
      connectClient(b.url, 'doc'),
      connectClient(a.url, 'doc'),
      connectClient(b.url, 'doc'),
    ]
    await Promise.all(clients.map((c) => c.synced()))
    clients.forEach((c, i) => editConcurrently(c, i, 25))
    const expected = () => docContent(clients[0]!.doc)
    await vi.waitFor(
      () => {
        for (const c of clients) expect(docContent(c.doc)).toEqual(expected())
      },
      { timeout: 10_000 },
    )
    const content = expected() as { text: string; map: Record<string, unknown>; array: number[] }
    expect(Object.keys(content.map)).toHaveLength(4 * 25)
    expect(content.array).toHaveLength(4 * 25)
    // A client joining later on either node gets the same state from the stream alone.
    const late = connectClient(b.url, 'doc')
    await late.synced()
    expect(docContent(late.doc)).toEqual(expected())
    for (const c of [...clients, late]) c.destroy()
  })

  it('converges 20 clients x 3 nodes x 5 documents', async () => {
    const prefix = uniquePrefix('many')
    const nodes = await Promise.all([0, 1, 2].map(() => startTestNode(env(prefix))))
    try {
      const clients: { doc: string; client: TestClient }[] = []
      for (let d = 0; d < 5; d++) {
        for (let i = 0; i < 20; i++) {
          clients.push({ doc: `doc-${d}`, client: connectClient(nodes[i % 3]!.url, `doc-${d}`) })
        }
      }
      await Promise.all(clients.map(({ client }) => client.synced()))
      clients.forEach(({ client }, i) => editConcurrently(client, i, 5))
      await vi.waitFor(
        () => {
          for (let d = 0; d < 5; d++) {
            const ofDoc = clients.filter((c) => c.doc === `doc-${d}`)
            const reference = docContent(ofDoc[0]!.client.doc) as { map: Record<string, unknown> }
            expect(Object.keys(reference.map)).toHaveLength(20 * 5)
            for (const { client } of ofDoc) expect(docContent(client.doc)).toEqual(reference)
          }
        },
        { timeout: 20_000, interval: 200 },
      )
      // Documents stay separate.
      const first = docContent(clients[0]!.client.doc) as { map: Record<string, unknown> }
      const other = docContent(clients[20]!.client.doc) as { map: Record<string, unknown> }
      expect(first.map).not.toEqual(other.map)
      for (const { client } of clients) client.destroy()
    } finally {
      await Promise.all(nodes.map((n) => n.close()))
    }
  })

  it('does not echo an update to the connection that sent it', async () => {
    const prefix = uniquePrefix('echo')
    await using node = await startTestNode(env(prefix))
    const observer = connectClient(node.url, 'doc')
    await observer.synced()
    const raw = connectRaw(`${node.url}/doc`)
    await raw.opened
    raw.send(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
    await vi.waitFor(() =>
      expect(raw.messages.some((m) => decodeMessage(m).kind === 'sync-step2')).toBe(true),
    )
    const writer = new Y.Doc()
    let update: Uint8Array | null = null
    writer.on('update', (u: Uint8Array) => (update = u))
    writer.getText('t').insert(0, 'hello from raw')
    const { encodeSyncUpdate } = await import('@streambed/protocol')
    const before = raw.messages.length
    raw.send(encodeSyncUpdate(update!))
    await vi.waitFor(() => expect(observer.doc.getText('t').toString()).toBe('hello from raw'))
    // The observer's reply traffic is done; give the raw socket the same chance to (wrongly) get it.
    await new Promise((r) => setTimeout(r, 300))
    const updatesBack = raw.messages
      .slice(before)
      .filter((m) => decodeMessage(m).kind === 'sync-update')
    expect(updatesBack).toHaveLength(0)
    raw.close()
    observer.destroy()
  })

  it('appends nothing when a client connects without changes', async () => {
    const prefix = uniquePrefix('nochange')
    await using node = await startTestNode(env(prefix))
    const writer = connectClient(node.url, 'doc')
    await writer.synced()
    writer.doc.getText('t').insert(0, 'abcdef')
    writer.doc.getText('t').delete(1, 2)
    await vi.waitFor(async () => expect(await streamLength(prefix, 'doc')).toBe(2))
    writer.destroy()
    // Same content, fresh connections: their sync step 2 adds nothing (including deletions).
    const copy = new Y.Doc()
    Y.applyUpdate(copy, Y.encodeStateAsUpdate(writer.doc))
    const again = connectClient(node.url, 'doc', { doc: copy })
    const fresh = connectClient(node.url, 'doc')
    await Promise.all([again.synced(), fresh.synced()])
    await new Promise((r) => setTimeout(r, 300))
    expect(await streamLength(prefix, 'doc')).toBe(2)
    expect(fresh.doc.getText('t').toString()).toBe('adef')
    again.destroy()
    fresh.destroy()
  })

  it('sends an up-to-date client less than 1 KB when it reconnects to a 1 MB document', async () => {
    const prefix = uniquePrefix('delta')
    await using node = await startTestNode(env(prefix))
    const writer = connectClient(node.url, 'big')
    await writer.synced()
    const text = writer.doc.getText('t')
    const chunk = 'x'.repeat(1000)
    for (let i = 0; i < 1100; i++) {
      writer.doc.transact(() => {
        text.insert(text.length, `${i}:${chunk}`)
        if (i % 10 === 0) text.delete(text.length - 5, 3)
      })
    }
    const size = Y.encodeStateAsUpdate(writer.doc).length
    expect(size).toBeGreaterThan(1_000_000)
    // Bursts are coalesced, so count content rather than entries.
    const check = connectClient(node.url, 'big')
    await vi.waitFor(() => expect(check.doc.getText('t').length).toBe(text.length), {
      timeout: 20_000,
    })
    check.destroy()
    const sv = Y.encodeStateVector(writer.doc)
    writer.destroy()

    const raw = connectRaw(`${node.url}/big`)
    await raw.opened
    raw.send(encodeSyncStep1(sv))
    await vi.waitFor(
      () => expect(raw.messages.some((m) => decodeMessage(m).kind === 'sync-step2')).toBe(true),
      { timeout: 10_000 },
    )
    const step2 = raw.messages.find((m) => decodeMessage(m).kind === 'sync-step2')!
    expect(step2.length).toBeLessThan(1024)
    // And a client with nothing gets the whole document.
    const empty = connectRaw(`${node.url}/big`)
    await empty.opened
    empty.send(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
    await vi.waitFor(
      () => expect(empty.messages.some((m) => decodeMessage(m).kind === 'sync-step2')).toBe(true),
      { timeout: 10_000 },
    )
    const full = empty.messages.find((m) => decodeMessage(m).kind === 'sync-step2')!
    expect(full.length).toBeGreaterThan(1_000_000)
    raw.close()
    empty.close()
  })

  it('streams a large document to a slow reader, with the updates made meanwhile after it, intact', async () => {
    const prefix = uniquePrefix('stream')
    await using node = await startTestNode(env(prefix))
    const writer = connectClient(node.url, 'big')
    await writer.synced()
    const text = writer.doc.getText('t')
    // 12 MB: more than loopback's kernel buffers hold, so the send is still going when we resume.
    for (let i = 0; i < 48; i++) text.insert(text.length, String(i % 10).repeat(250_000))
    const reader = connectClient(node.url, 'big')
    await vi.waitFor(() => expect(reader.doc.getText('t').length).toBe(12_000_000), {
      timeout: 30_000,
    })

    const slow = connectRaw(`${node.url}/big`)
    await slow.opened
    const socket = (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket
    socket.pause()
    slow.send(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
    // The node has read the document and started sending it; the client does not read.
    await new Promise((r) => setTimeout(r, 500))
    for (let i = 0; i < 20; i++) writer.doc.getMap('m').set(`k${i}`, i)
    await vi.waitFor(() => expect(reader.doc.getMap('m').size).toBe(20), { timeout: 10_000 })
    socket.resume()

    // Live entries may be delivered coalesced: count content, not messages.
    let received = new Y.Doc()
    await vi.waitFor(
      () => {
        const decoded = slow.messages.map(decodeMessage)
        const kinds = decoded.map((m) => m.kind)
        // The document came first, whole, in one message; every live update after it.
        expect(kinds.filter((k) => k === 'sync-step2')).toHaveLength(1)
        expect(kinds.indexOf('sync-step2')).toBeLessThan(kinds.indexOf('sync-update'))
        received = new Y.Doc()
        for (const m of decoded)
          if (m.kind === 'sync-step2' || m.kind === 'sync-update') Y.applyUpdate(received, m.update)
        expect(received.getMap('m').size).toBe(20)
      },
      { timeout: 30_000 },
    )
    expect(docContent(received)).toEqual(docContent(writer.doc))
    expect(slow.ws.readyState).toBe(slow.ws.OPEN)
    for (const c of [writer, reader]) c.destroy()
    slow.close()
  })
})
