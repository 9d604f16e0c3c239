import { expect, it, vi } from 'vitest'
import {
  connectClient,
  expectedEntries,
  missingFrom,
  startBalancer,
  startTyping,
  uniquePrefix,
  useRedisServer,
} from '@streambed/testing'
import { spawnNode } from './testing/nodes.js'

const redis = useRedisServer()

it('loses nothing when a node is SIGKILLed while its clients type; they resync through another node', async () => {
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix('crash') }
  const nodes = await Promise.all([spawnNode(env), spawnNode(env), spawnNode(env)])
  await using lb = await startBalancer(nodes.map((n) => n.port))
  try {
    const clients = Array.from({ length: 6 }, () =>
      connectClient(lb.url, 'doc', { maxBackoffTime: 300 }),
    )
    await Promise.all(clients.map((c) => c.synced()))
    const typists = clients.map((c, i) => startTyping(c, `c${i}`))
    const typedAtLeast = (counts: number[], more: number) =>
      vi.waitFor(
        () => typists.forEach((t, i) => expect(t.typed).toBeGreaterThanOrEqual(counts[i]! + more)),
        { timeout: 60_000 },
      )
    await typedAtLeast([0, 0, 0, 0, 0, 0], 30)

    const [, victim] = nodes
    await victim.crash()
    expect(await victim.proc.exited).toBe('SIGKILL')
    // The clients of the killed node (a third of them, round robin) lost their connection.
    await vi.waitFor(
      () => expect(typists.filter((t) => t.disconnects > 0).length).toBeGreaterThanOrEqual(2),
      { timeout: 20_000 },
    )
    // They keep typing while they reconnect (the balancer skips the refused backend).
    await typedAtLeast(
      typists.map((t) => t.typed),
      30,
    )
    for (const t of typists) t.stop()

    const expected = expectedEntries(typists)
    await vi.waitFor(
      () => {
        for (const c of clients) expect(missingFrom(c, expected)).toEqual([])
      },
      { timeout: 20_000, interval: 200 },
    )
    // Stored state agrees: a fresh client through the balancer sees every entry exactly once.
    const fresh = connectClient(lb.url, 'doc')
    await fresh.synced()
    const log = fresh.doc.getArray<string>('log').toArray()
    expect(log.length).toBe(expected.size)
    expect(new Set(log)).toEqual(expected)
    for (const c of [...clients, fresh]) c.destroy()
  } finally {
    await Promise.all(nodes.map((n) => n.crash()))
  }
})
