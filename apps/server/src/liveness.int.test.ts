import * as Y from 'yjs'
import { Redis } from 'ioredis'
import { expect, it, vi } from 'vitest'
import { CloseCode } from '@streambed/common'
import { decodeAwarenessUpdate, decodeMessage, encodeSyncStep1 } from '@streambed/protocol'
import {
  connectClient,
  connectRaw,
  startRedisServer,
  uniquePrefix,
  useRedisServer,
} from '@streambed/testing'
import { startTestNode } from './testing/test-node.js'

const redis = useRedisServer()

it('sends a no-op message on quiet connections so y-websocket clients do not time out', async () => {
  await using node = await startTestNode({
    REDIS_URL: redis.url,
    REDIS_PREFIX: uniquePrefix('ka'),
    KEEPALIVE_MS: '300',
  })
  const raw = connectRaw(`${node.url}/quiet`)
  await raw.opened
  await new Promise((r) => setTimeout(r, 2500))
  const keepalives = raw.messages.filter((m) => {
    const msg = decodeMessage(m)
    return msg.kind === 'awareness' && decodeAwarenessUpdate(msg.update).length === 0
  })
  // About one per 300 ms; timers run late on a loaded machine, so only the order of magnitude:
  // some arrive, and not one per keepalive check (every 100 ms).
  expect(keepalives.length).toBeGreaterThanOrEqual(1)
  expect(keepalives.length).toBeLessThanOrEqual(12)
  raw.close()
})

it(
  'closes a client that stops reading (4508) and keeps serving the others',
  { timeout: 180_000 },
  async () => {
    await using node = await startTestNode({
      REDIS_URL: redis.url,
      REDIS_PREFIX: uniquePrefix('slow'),
      // Far below the 30 MB flood (plus kernel buffers) for a client that stops reading, far above
      // what a reading client accumulates even on a loaded machine.
      WS_MAX_BACKPRESSURE_BYTES: '4MiB',
    })
    const writer = connectClient(node.url, 'doc')
    const reader = connectClient(node.url, 'doc')
    await Promise.all([writer.synced(), reader.synced()])
    const slow = connectRaw(`${node.url}/doc`)
    await slow.opened
    slow.send(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
    await vi.waitFor(() => expect(slow.messages.length).toBeGreaterThan(0))
    // Stop reading from the socket: the kernel buffers fill (several MB on loopback), then the
    // server's send buffer does.
    const socket = (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket
    socket.pause()
    const text = writer.doc.getText('t')
    const chunk = 'y'.repeat(250_000)
    for (let i = 0; i < 120; i++) text.insert(text.length, chunk)
    // Counted, not timed: 30 MB reach the reading client however loaded the machine is.
    await vi.waitFor(() => expect(reader.doc.getText('t').length).toBe(30_000_000), {
      timeout: 120_000,
    })
    socket.resume()
    const closed = await slow.closed
    expect(closed.code).toBe(CloseCode.slowConsumer)
    // The others were not affected.
    writer.doc.getMap('m').set('after', 1)
    await vi.waitFor(() => expect(reader.doc.getMap('m').get('after')).toBe(1), { timeout: 10_000 })
    writer.destroy()
    reader.destroy()
  },
)

it('refuses to start on a Redis that may evict keys, unless allowed', async () => {
  await using evicting = await startRedisServer()
  const admin = new Redis(evicting.url)
  await admin.config('SET', 'maxmemory-policy', 'allkeys-lru')
  admin.disconnect()
  const env = { REDIS_URL: evicting.url, REDIS_PREFIX: uniquePrefix('evict') }
  await expect(startTestNode(env)).rejects.toThrow(
    /maxmemory-policy is "allkeys-lru".*REDIS_ALLOW_EVICTION=true/,
  )
  await using node = await startTestNode({ ...env, REDIS_ALLOW_EVICTION: 'true' })
  expect((await fetch(`${node.httpUrl}/readyz`)).status).toBe(200)
})

it('answers a flood of sync step 1 messages with a few reads, not one per message', async () => {
  await using node = await startTestNode({
    REDIS_URL: redis.url,
    REDIS_PREFIX: uniquePrefix('flood'),
  })
  const writer = connectClient(node.url, 'doc')
  await writer.synced()
  writer.doc.getText('t').insert(0, 'x'.repeat(200_000))
  const raw = connectRaw(`${node.url}/doc`)
  await raw.opened
  const step1 = encodeSyncStep1(Y.encodeStateVector(new Y.Doc()))
  for (let i = 0; i < 50; i++) raw.send(step1)
  await vi.waitFor(() =>
    expect(raw.messages.some((m) => decodeMessage(m).kind === 'sync-step2')).toBe(true),
  )
  await new Promise((r) => setTimeout(r, 500))
  const replies = raw.messages.filter((m) => decodeMessage(m).kind === 'sync-step2').length
  // The first, then one for everything that queued up meanwhile.
  expect(replies).toBeGreaterThanOrEqual(1)
  expect(replies).toBeLessThanOrEqual(3)
  raw.close()
  writer.destroy()
})
