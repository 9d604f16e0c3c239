import { Redis } from 'ioredis'
import { expect, it, vi } from 'vitest'
import {
  connectClient,
  expectedEntries,
  missingFrom,
  startRedisServer,
  startTyping,
  uniquePrefix,
} from '@streambed/testing'
import { startTestNode } from './testing/test-node.js'

it('loses no acknowledged update across a Redis restart (AOF) while clients type', async () => {
  await using redis = await startRedisServer({ aof: true, appendfsync: 'always' })
  const prefix = uniquePrefix('restart')
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: prefix }
  await using a = await startTestNode(env)
  await using b = await startTestNode(env)
  const clients = [
    connectClient(a.url, 'doc'),
    connectClient(b.url, 'doc'),
    connectClient(a.url, 'doc'),
    connectClient(b.url, 'doc'),
  ]
  await Promise.all(clients.map((c) => c.synced()))
  const typists = clients.map((c, i) => startTyping(c, `c${i}`, 25))
  await new Promise((r) => setTimeout(r, 700))

  // Everything Redis acknowledged before the restart must still be there afterwards.
  const admin = new Redis(redis.url, { maxRetriesPerRequest: null })
  admin.on('error', () => {})
  const streamKey = `${prefix}:v1:{doc}:s`
  const acknowledged = (await admin.xrange(streamKey, '-', '+')).map(([id]) => id)
  expect(acknowledged.length).toBeGreaterThan(10)
  await redis.restart({ downMs: 1000 })
  const after = new Set((await admin.xrange(streamKey, '-', '+')).map(([id]) => id))
  expect(acknowledged.filter((id) => !after.has(id))).toEqual([])

  // Clients typed through the outage; keep typing a little after it.
  await new Promise((r) => setTimeout(r, 1500))
  for (const t of typists) t.stop()
  // Appends failed during the outage: the nodes closed those connections (4503) and the clients
  // resynced after reconnecting.
  expect(typists.some((t) => t.disconnects > 0)).toBe(true)
  const expected = expectedEntries(typists)
  await vi.waitFor(
    () => {
      for (const c of clients) expect(missingFrom(c, expected)).toEqual([])
    },
    { timeout: 20_000, interval: 200 },
  )
  const fresh = connectClient(b.url, 'doc')
  await fresh.synced()
  expect(new Set(fresh.doc.getArray<string>('log').toArray())).toEqual(expected)
  expect(fresh.doc.getArray('log').length).toBe(expected.size)
  admin.disconnect()
  for (const c of [...clients, fresh]) c.destroy()
})
