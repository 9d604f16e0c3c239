import * as Y from 'yjs'
import { describe, expect, it, vi } from 'vitest'
import { createLogger } from '@streambed/common'
import { startTestNode } from '@streambed/server/testing'
import { openStorage, type DocStorage } from '@streambed/storage'
import { connectClient, docContent, uniquePrefix, useRedisServer } from '@streambed/testing'
import { parseWorkerConfig } from '@streambed/worker-app'
import { startTestWorker } from '@streambed/worker-app/testing'
import { backendNames, startBackend } from './testing/backends.js'

const redis = useRedisServer()

const openFor = (env: Record<string, string>): Promise<DocStorage> =>
  openStorage(parseWorkerConfig(env), createLogger({ level: 'silent' }))

describe.each(backendNames)('compaction into %s', (backendName) => {
  it('compacts edits made through two nodes; a fresh client gets identical state from storage + tail', async () => {
    const backend = await startBackend(backendName)
    const prefix = uniquePrefix(`e2e-${backendName}`)
    const env = { REDIS_URL: redis.url, REDIS_PREFIX: prefix, ...backend.env }
    const storage = await openFor(env)
    try {
      await using a = await startTestNode(env)
      await using b = await startTestNode(env)
      await using _worker = await startTestWorker(env)
      const alice = connectClient(a.url, 'notes')
      const bob = connectClient(b.url, 'notes')
      await Promise.all([alice.synced(), bob.synced()])
      for (let i = 0; i < 40; i++) {
        alice.doc.getText('text').insert(0, `a${i} `)
        bob.doc.getMap('map').set(`k${i}`, i)
        if (i % 5 === 4) alice.doc.getText('text').delete(0, 3)
      }
      await vi.waitFor(() => expect(docContent(bob.doc)).toEqual(docContent(alice.doc)))
      const streamKey = `${prefix}:v1:{notes}:s`
      const metaKey = `${prefix}:v1:{notes}:m`
      expect(await redis.admin.xlen(streamKey)).toBeGreaterThan(10)

      // The worker stores the document, trims the stream, and deletes the idle stream key.
      await vi.waitFor(async () => expect(await redis.admin.exists(streamKey)).toBe(0), {
        timeout: 10_000,
        interval: 100,
      })
      const stored = await storage.load('notes')
      expect(stored?.watermark).toBe(await redis.admin.hget(metaKey, 'last'))
      const fromStorage = new Y.Doc()
      Y.applyUpdate(fromStorage, stored!.state)
      expect(docContent(fromStorage)).toEqual(docContent(alice.doc))
      // The snapshot is a garbage-collected Y.Doc's encodeStateAsUpdate, not merged updates.
      expect(stored!.state.length).toBe(Y.encodeStateAsUpdate(fromStorage).length)
      // The raw entries were archived to the update log.
      expect((await storage.readLog('notes')).length).toBeGreaterThan(10)

      // More edits after compaction live in the stream; a fresh client on the other node gets both.
      alice.doc.getText('text').insert(0, 'after ')
      bob.doc.getMap('map').set('after', true)
      await vi.waitFor(async () => expect(await redis.admin.xlen(streamKey)).toBe(2))
      const carol = connectClient(b.url, 'notes')
      await carol.synced()
      expect(docContent(carol.doc)).toEqual(docContent(alice.doc))
      for (const c of [alice, bob, carol]) c.destroy()
    } finally {
      await storage.close()
      await backend.close()
    }
  })
})
