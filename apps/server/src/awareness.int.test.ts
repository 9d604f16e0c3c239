import { describe, expect, it, vi } from 'vitest'
import { decodeAwarenessUpdate, decodeMessage } from '@streambed/protocol'
import {
  connectClient,
  connectRaw,
  uniquePrefix,
  type TestClient,
  useRedisServer,
} from '@streambed/testing'
import { startTestNode } from './testing/test-node.js'

const redis = useRedisServer()

// Fast liveness so a crashed node is noticed in ~1.5 s (y-protocols clients alone take 30 s).
const timing = { NODE_HEARTBEAT_MS: '300', NODE_TIMEOUT_MS: '1500' }
const env = (prefix: string) => ({ REDIS_URL: redis.url, REDIS_PREFIX: prefix, ...timing })

const userOf = (observer: TestClient, peer: TestClient): unknown =>
  (observer.provider.awareness.getStates().get(peer.doc.clientID) as { user?: unknown } | undefined)
    ?.user

describe('awareness across nodes', () => {
  it('relays live, gives late joiners a snapshot from every node, and removes states on close', async () => {
    const prefix = uniquePrefix('aw')
    await using a = await startTestNode(env(prefix))
    await using b = await startTestNode(env(prefix))
    await using c = await startTestNode(env(prefix))
    const alice = connectClient(a.url, 'doc')
    const bob = connectClient(b.url, 'doc')
    await Promise.all([alice.synced(), bob.synced()])
    alice.provider.awareness.setLocalStateField('user', { name: 'alice' })
    await vi.waitFor(() => expect(userOf(bob, alice)).toEqual({ name: 'alice' }))
    bob.provider.awareness.setLocalStateField('user', { name: 'bob' })
    await vi.waitFor(() => expect(userOf(alice, bob)).toEqual({ name: 'bob' }))

    // Carol joins later on a third node: she sees both without anyone changing anything.
    const carol = connectClient(c.url, 'doc')
    await carol.synced()
    await vi.waitFor(() => {
      expect(userOf(carol, alice)).toEqual({ name: 'alice' })
      expect(userOf(carol, bob)).toEqual({ name: 'bob' })
    })

    // Updates keep flowing to everyone.
    alice.provider.awareness.setLocalStateField('user', { name: 'alice', cursor: 3 })
    await vi.waitFor(() => {
      expect(userOf(bob, alice)).toEqual({ name: 'alice', cursor: 3 })
      expect(userOf(carol, alice)).toEqual({ name: 'alice', cursor: 3 })
    })

    // Alice closes her connection: her state disappears on the other nodes at once.
    alice.destroy()
    await vi.waitFor(
      () => {
        expect(bob.provider.awareness.getStates().has(alice.doc.clientID)).toBe(false)
        expect(carol.provider.awareness.getStates().has(alice.doc.clientID)).toBe(false)
      },
      { timeout: 5000 },
    )
    // ... and a newcomer does not get it in the snapshot either, but still gets bob's.
    const dave = connectClient(a.url, 'doc')
    await dave.synced()
    await vi.waitFor(() => expect(userOf(dave, bob)).toEqual({ name: 'bob' }))
    expect(dave.provider.awareness.getStates().has(alice.doc.clientID)).toBe(false)
    for (const client of [bob, carol, dave]) client.destroy()
  })

  it('relays one message per change, not one per client (clients echo what they receive)', async () => {
    const prefix = uniquePrefix('aw-echo')
    await using a = await startTestNode(env(prefix))
    await using b = await startTestNode(env(prefix))
    const clients = Array.from({ length: 8 }, (_, i) => connectClient(i % 2 ? a.url : b.url, 'doc'))
    await Promise.all(clients.map((c) => c.synced()))
    const observer = connectRaw(`${a.url}/doc`)
    await observer.opened
    await new Promise((r) => setTimeout(r, 300))
    const before = observer.messages.length
    clients[0]!.provider.awareness.setLocalStateField('user', { name: 'zero' })
    await vi.waitFor(() =>
      expect(clients.every((c) => userOf(c, clients[0]!) !== undefined)).toBe(true),
    )
    await new Promise((r) => setTimeout(r, 300))
    const relayed = observer.messages.slice(before).filter((m) => {
      const msg = decodeMessage(m)
      return msg.kind === 'awareness' && decodeAwarenessUpdate(msg.update).length > 0
    })
    // The change itself; the 7 echoes (same clock) are dropped in Redis.
    expect(relayed).toHaveLength(1)
    observer.close()
    for (const c of clients) c.destroy()
  })

  it('keeps awareness of different documents apart', async () => {
    const prefix = uniquePrefix('aw-docs')
    await using a = await startTestNode(env(prefix))
    await using b = await startTestNode(env(prefix))
    const one = connectClient(a.url, 'one')
    const other = connectClient(b.url, 'other')
    const peer = connectClient(b.url, 'one')
    await Promise.all([one.synced(), other.synced(), peer.synced()])
    one.provider.awareness.setLocalStateField('user', { name: 'one' })
    await vi.waitFor(() => expect(userOf(peer, one)).toEqual({ name: 'one' }))
    expect(other.provider.awareness.getStates().has(one.doc.clientID)).toBe(false)
    for (const client of [one, other, peer]) client.destroy()
  })
})
