import { createHmac } from 'node:crypto'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import * as Y from 'yjs'
import { Redis } from 'ioredis'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createLogger } from '@streambed/common'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { WEBHOOK_EVENTS, type WebhookSettings } from './config.js'
import { SIGNATURE_HEADER, verifyWebhook } from './signature.js'
import { createWebhooks, type WebhookPayload } from './webhooks.js'

const redis = useRedisServer()
const SECRET = 'webhook-test-secret-0123456789'

interface Received {
  readonly headers: IncomingHttpHeaders
  readonly body: string
  readonly payload: WebhookPayload
  readonly signature: ReturnType<typeof verifyWebhook>
  readonly status: number
}

/**
 * A real HTTP receiver that verifies every signature and answers with `answer(payload, attempt)`
 * (default 200).
 */
const startReceiver = async (
  answer: (p: WebhookPayload, attempt: number) => number = () => 200,
) => {
  const received: Received[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      const payload = JSON.parse(body) as WebhookPayload
      const signature = verifyWebhook(SECRET, req.headers[SIGNATURE_HEADER] as string, body)
      const status = signature.ok ? answer(payload, Number(req.headers['streambed-attempt'])) : 401
      received.push({ headers: req.headers, body, payload, signature, status })
      res.writeHead(status).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`
  return {
    url,
    received,
    [Symbol.asyncDispose]: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

const settings = (urls: string[], extra: Partial<WebhookSettings> = {}): WebhookSettings => ({
  urls,
  secret: SECRET,
  events: [...WEBHOOK_EVENTS],
  debounceMs: 300,
  includeDocument: false,
  attempts: 4,
  backoffMs: 20,
  timeoutMs: 5000,
  concurrency: 4,
  keepFailed: 100,
  ...extra,
})

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const open = (s: WebhookSettings, extra: Partial<Parameters<typeof createWebhooks>[0]> = {}) => {
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null })
  const webhooks = createWebhooks({
    connection,
    redisPrefix: uniquePrefix('hooks'),
    settings: s,
    logger: createLogger({ level: 'silent' }),
    ...extra,
  })
  cleanups.push(async () => {
    await webhooks.close()
    connection.disconnect()
  })
  return webhooks
}

describe('webhooks', () => {
  it('signs deliveries, retries with backoff until the receiver takes them, and debounces updates', async () => {
    // The receiver fails the first two attempts of every delivery.
    await using receiver = await startReceiver((_p, attempt) => (attempt <= 2 ? 503 : 200))
    const registry = new Registry()
    const stored = new Map<string, { state: Uint8Array; watermark: string }>()
    // A debounce far longer than the five emits take even on a loaded machine.
    const hooks = open(settings([receiver.url], { debounceMs: 3000 }), {
      registry,
      loadState: (doc) => Promise.resolve(stored.get(doc) ?? null),
    })
    hooks.startDelivery()

    await hooks.emit({ type: 'document.created', doc: 'team/a', id: '100-0' })
    // A burst of updates within the debounce time: one delivery, carrying the newest stored id.
    for (let i = 1; i <= 5; i++) {
      stored.set('team/a', { state: Y.encodeStateAsUpdate(new Y.Doc()), watermark: `${100 + i}-0` })
      await hooks.emit({
        type: 'document.updated',
        doc: 'team/a',
        id: `${100 + i}-0`,
        previous: `${99 + i}-0`,
      })
    }
    await hooks.emit({ type: 'document.deleted', doc: 'team/b', id: '7-0' })

    await vi.waitFor(
      () => expect(receiver.received.filter((r) => r.status === 200)).toHaveLength(3),
      { timeout: 20_000, interval: 50 },
    )
    for (const r of receiver.received) expect(r.signature.ok).toBe(true)
    const delivered = receiver.received.filter((r) => r.status === 200)
    const byType = Object.fromEntries(delivered.map((r) => [r.payload.type, r]))
    expect(byType['document.created']!.payload).toMatchObject({
      doc: 'team/a',
      data: { id: '105-0' },
    })
    expect(byType['document.updated']!.payload).toMatchObject({
      doc: 'team/a',
      data: { id: '105-0', previous: '100-0' },
    })
    expect(byType['document.deleted']!.payload).toMatchObject({
      doc: 'team/b',
      data: { id: '7-0' },
    })
    // Every delivery took three attempts with one delivery id; the headers say which.
    for (const r of delivered) {
      const attempts = receiver.received.filter((x) => x.payload.id === r.payload.id)
      expect(attempts.map((x) => x.headers['streambed-attempt'])).toEqual(['1', '2', '3'])
      expect(r.headers['streambed-delivery']).toBe(r.payload.id)
      expect(r.headers['streambed-event']).toBe(r.payload.type)
    }
    // Only one updated delivery for the burst.
    expect(
      new Set(
        receiver.received
          .filter((r) => r.payload.type === 'document.updated')
          .map((r) => r.payload.id),
      ).size,
    ).toBe(1)

    // The worker counts a delivery once BullMQ has completed its job, just after the receiver
    // answered.
    await vi.waitFor(async () => {
      const text = await registry.metrics()
      expect(text).toMatch(
        /streambed_webhook_deliveries_total\{type="document.updated",outcome="retrying"\} 2/,
      )
      expect(text).toMatch(
        /streambed_webhook_deliveries_total\{type="document.updated",outcome="delivered"\} 1/,
      )
      expect(text).toMatch(/streambed_webhook_failed 0/)
    })
  })

  it('keeps deliveries that used up their attempts in the failed set and resends them', async () => {
    let up = false
    await using receiver = await startReceiver(() => (up ? 200 : 500))
    const registry = new Registry()
    const hooks = open(settings([receiver.url], { attempts: 2 }), { registry })
    hooks.startDelivery()
    await hooks.emit({ type: 'document.deleted', doc: 'x', id: '1-0' })
    await hooks.emit({ type: 'document.deleted', doc: 'y', id: '2-0' })
    await vi.waitFor(async () => expect(await hooks.failed()).toHaveLength(2), { timeout: 20_000 })
    const failed = await hooks.failed()
    expect(failed.map((f) => f.doc).sort()).toEqual(['x', 'y'])
    expect(failed[0]).toMatchObject({
      attempts: 2,
      url: receiver.url,
      reason: expect.stringMatching(/answered 500/),
    })
    expect(receiver.received).toHaveLength(4)
    expect(await registry.metrics()).toMatch(/streambed_webhook_failed 2/)

    await expect(hooks.resend(['no-such-id'])).rejects.toThrow(/no webhook delivery/)
    up = true
    const x = failed.find((f) => f.doc === 'x')!
    expect(await hooks.resend([x.id])).toBe(1)
    await vi.waitFor(() =>
      expect(receiver.received.filter((r) => r.status === 200)).toHaveLength(1),
    )
    expect(receiver.received.at(-1)!.payload).toMatchObject({ id: x.id, doc: 'x' })
    expect(await hooks.resend('all')).toBe(1)
    await vi.waitFor(() =>
      expect(receiver.received.filter((r) => r.status === 200)).toHaveLength(2),
    )
    expect(await hooks.failed()).toEqual([])
  })

  it('includes the stored document as JSON when asked, and only sends the configured events', async () => {
    await using receiver = await startReceiver()
    const doc = new Y.Doc()
    doc.getText('body').insert(0, 'hello')
    doc.getMap('meta').set('title', 'Plan')
    const state = Y.encodeStateAsUpdate(doc)
    const hooks = open(
      settings([receiver.url], {
        includeDocument: true,
        debounceMs: 0,
        events: ['document.updated'],
      }),
      { loadState: () => Promise.resolve({ state, watermark: '5-0' }) },
    )
    hooks.startDelivery()
    await hooks.emit({ type: 'document.created', doc: 'p', id: '5-0' })
    await hooks.emit({ type: 'document.updated', doc: 'p', id: '5-0', previous: '0-0' })
    await vi.waitFor(() => expect(receiver.received).toHaveLength(1))
    expect(receiver.received[0]!.payload).toMatchObject({
      type: 'document.updated',
      data: { id: '5-0', document: { body: 'hello', meta: { title: 'Plan' } } },
    })
  })

  it('refuses tampered, unsigned, stale and wrongly keyed deliveries', () => {
    const body = '{"id":"1"}'
    const now = Date.now()
    const good = `t=${Math.floor(now / 1000)},v1=`
    const sig = (secret: string, t = Math.floor(now / 1000)) => {
      return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`
    }
    expect(verifyWebhook(SECRET, sig(SECRET), body).ok).toBe(true)
    expect(verifyWebhook(SECRET, sig(SECRET), `${body} `)).toMatchObject({
      ok: false,
      reason: /does not match/,
    })
    expect(verifyWebhook(SECRET, sig('other-secret-0123456789'), body).ok).toBe(false)
    expect(verifyWebhook(SECRET, undefined, body)).toMatchObject({ ok: false, reason: /missing/ })
    expect(verifyWebhook(SECRET, good, body)).toMatchObject({ ok: false, reason: /malformed/ })
    expect(verifyWebhook(SECRET, sig(SECRET, Math.floor(now / 1000) - 600), body)).toMatchObject({
      ok: false,
      reason: /off/,
    })
  })
})
