import { describe, expect, it, vi } from 'vitest'
import { startTestNode } from '@streambed/server/testing'
import { connectClient, uniquePrefix, type TestClient, useRedisServer } from '@streambed/testing'
import { spawnNode } from './testing/nodes.js'

// Awareness across nodes when one is SIGKILLed: a child process (apps/server/src/awareness.int.test.ts
// covers the in-process cases).
const redis = useRedisServer()

// Fast liveness so a crashed node is noticed in ~1.5 s (y-protocols clients alone take 30 s).
const timing = { NODE_HEARTBEAT_MS: '300', NODE_TIMEOUT_MS: '1500' }
const env = (prefix: string) => ({ REDIS_URL: redis.url, REDIS_PREFIX: prefix, ...timing })

const userOf = (observer: TestClient, peer: TestClient): unknown =>
  (observer.provider.awareness.getStates().get(peer.doc.clientID) as { user?: unknown } | undefined)
    ?.user

describe('awareness across nodes', () => {
  it('expires the states of a crashed node on the other nodes', async () => {
    const prefix = uniquePrefix('aw-crash')
    await using a = await startTestNode(env(prefix))
    const doomed = await spawnNode(env(prefix))
    const observer = connectClient(a.url, 'doc')
    const victim = connectClient(doomed.url, 'doc')
    await Promise.all([observer.synced(), victim.synced()])
    victim.provider.awareness.setLocalStateField('user', { name: 'victim' })
    await vi.waitFor(() => expect(userOf(observer, victim)).toEqual({ name: 'victim' }))

    await doomed.crash()
    const crashedAt = Date.now()
    // The victim's provider keeps retrying the dead node; only the server side can remove it.
    await vi.waitFor(
      () => expect(observer.provider.awareness.getStates().has(victim.doc.clientID)).toBe(false),
      {
        timeout: 15_000,
        interval: 100,
      },
    )
    // Well before y-protocols' own 30 s client-side timeout.
    expect(Date.now() - crashedAt).toBeLessThan(10_000)
    // A newcomer does not see the dead client either.
    const newcomer = connectClient(a.url, 'doc')
    await newcomer.synced()
    observer.provider.awareness.setLocalStateField('user', { name: 'observer' })
    await vi.waitFor(() => expect(userOf(newcomer, observer)).toEqual({ name: 'observer' }))
    expect(newcomer.provider.awareness.getStates().has(victim.doc.clientID)).toBe(false)
    for (const client of [observer, victim, newcomer]) client.destroy()
  })
})
