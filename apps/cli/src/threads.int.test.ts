import * as Y from 'yjs'
import { expect, it, vi } from 'vitest'
import { createDocStreams, createKeys } from '@streambed/streams'
import { decodeMessage, encodeSyncStep1 } from '@streambed/protocol'
import { connectRaw, uniquePrefix, useRedisServer } from '@streambed/testing'
import { createLogger } from '@streambed/common'
import { openStorage } from '@streambed/storage'
import { parseWorkerConfig } from '@streambed/worker-app'
import { startBackend } from './testing/backends.js'
import { spawnNode } from './testing/nodes.js'

// Worker threads load the TypeScript source only in child processes (tsx), so these run there.
const redis = useRedisServer()

/** A document of about 1 MB, written as 200 updates. */
const bigDocument = () => {
  const doc = new Y.Doc()
  const updates: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => updates.push(u))
  for (let i = 0; i < 200; i++) doc.getText('t').insert(0, `${i}:${'z'.repeat(5000)}`)
  return { doc, updates }
}

it('answers concurrent joins of a large document on a sync thread, with one shared read', async () => {
  const prefix = uniquePrefix('sync-thread')
  await using node = await spawnNode({ REDIS_URL: redis.url, REDIS_PREFIX: prefix })
  const { doc, updates } = bigDocument()
  const streams = createDocStreams({ redis: redis.admin, keys: createKeys(prefix), queueShards: 8 })
  for (const u of updates) await streams.append('big', u, 'test/0')
  const clients = Array.from({ length: 4 }, () => connectRaw(`${node.url}/big`))
  await Promise.all(clients.map((c) => c.opened))
  for (const c of clients) c.send(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
  await vi.waitFor(
    () => {
      for (const c of clients)
        expect(c.messages.some((m) => decodeMessage(m).kind === 'sync-step2')).toBe(true)
    },
    { timeout: 15_000 },
  )
  for (const c of clients) {
    const step2 = decodeMessage(c.messages.find((m) => decodeMessage(m).kind === 'sync-step2')!)
    const received = new Y.Doc()
    Y.applyUpdate(received, (step2 as { update: Uint8Array }).update)
    expect(received.getText('t').toString()).toBe(doc.getText('t').toString())
    c.close()
  }
  const metrics = await (await fetch(`${node.httpUrl}/metrics`)).text()
  const reads = Number(/^streambed_sync_reads_total (\d+)/m.exec(metrics)?.[1])
  expect(reads).toBeGreaterThanOrEqual(1)
  expect(reads).toBeLessThan(4)
})

it('compacts on a worker thread', async () => {
  const backend = await startBackend('fs')
  const prefix = uniquePrefix('merge-thread')
  const env = {
    REDIS_URL: redis.url,
    REDIS_PREFIX: prefix,
    ...backend.env,
    COMPACT_IDLE_MS: '100',
    MIN_MESSAGE_LIFETIME_MS: '0',
    WORKER_THREAD_ABOVE_BYTES: '1KiB',
  }
  const storage = await openStorage(parseWorkerConfig(env), createLogger({ level: 'silent' }))
  try {
    const { doc, updates } = bigDocument()
    const streams = createDocStreams({
      redis: redis.admin,
      keys: createKeys(prefix),
      queueShards: 8,
    })
    for (const u of updates) await streams.append('big', u, 'test/0')
    await using _worker = await spawnNode(env, { command: 'worker' })
    await vi.waitFor(async () => expect(await redis.admin.exists(`${prefix}:v1:{big}:s`)).toBe(0), {
      timeout: 15_000,
    })
    const stored = await storage.load('big')
    const check = new Y.Doc()
    Y.applyUpdate(check, stored!.state)
    expect(check.getText('t').toString()).toBe(doc.getText('t').toString())
  } finally {
    await storage.close()
    await backend.close()
  }
})
