/**
 * Webhooks end to end (issue 11, item 3): two nodes and a worker through their real composition
 * roots, real y-websocket clients, and a real HTTP receiver that checks every signature and fails
 * the first attempts. created → updated → deleted reach the endpoint with the stored ids and the
 * document; a delivery that used up its attempts waits in the failed set until `streambed webhooks
 * resend` (a child process) sends it again.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { startTestNode } from '@streambed/server/testing'
import { connectClient, uniquePrefix, useRedisServer } from '@streambed/testing'
import { SIGNATURE_HEADER, verifyWebhook, type WebhookPayload } from '@streambed/webhooks'
import { startTestWorker } from '@streambed/worker-app/testing'
import { startCliProcess } from './testing/nodes.js'

const redis = useRedisServer()
const SECRET = 'webhooks-e2e-secret-0123456789'

interface Delivery {
  readonly payload: WebhookPayload
  readonly attempt: number
  readonly signed: boolean
  readonly status: number
}

/** An endpoint answering `answer(attempt)`; every request is kept with its signature check. */
const startReceiver = async (answer: (p: WebhookPayload, attempt: number) => number) => {
  const seen: Delivery[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      const payload = JSON.parse(body) as WebhookPayload
      const signed = verifyWebhook(SECRET, String(req.headers[SIGNATURE_HEADER]), body).ok
      const attempt = Number(req.headers['streambed-attempt'])
      const status = signed ? answer(payload, attempt) : 401
      seen.push({ payload, attempt, signed, status })
      res.writeHead(status).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    seen,
    delivered: (type: string) => seen.filter((d) => d.status === 200 && d.payload.type === type),
    [Symbol.asyncDispose]: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

/** `streambed webhooks <args> --json` against the test's Redis; the parsed JSON it printed. */
const cli = async (prefix: string, args: string[]): Promise<unknown> => {
  const proc = startCliProcess(['webhooks', ...args, '--json'], {
    REDIS_URL: redis.url,
    REDIS_PREFIX: prefix,
  })
  expect(await proc.exited).toBe(0)
  const json = proc.output.find((l) => l.startsWith('{') || l.startsWith('['))
  return JSON.parse(json ?? 'null')
}

describe('webhooks from nodes and workers', () => {
  it('delivers created, updated and deleted, signed and retried; a failed one is resent by the CLI', async () => {
    // Fails each delivery's first two attempts, then takes it.
    await using flaky = await startReceiver((_p, attempt) => (attempt <= 2 ? 503 : 200))
    // Down until `up` is set: its deliveries use up their attempts.
    let up = false
    await using down = await startReceiver(() => (up ? 200 : 500))
    const prefix = uniquePrefix('webhooks')
    const dir = await mkdtemp(join(tmpdir(), 'streambed-webhooks-'))
    const env = {
      REDIS_URL: redis.url,
      REDIS_PREFIX: prefix,
      STORAGE_DIR: dir,
      WEBHOOK_URLS: `${flaky.url},${down.url}`,
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_DEBOUNCE_MS: '200',
      WEBHOOK_INCLUDE_DOCUMENT: 'true',
      WEBHOOK_ATTEMPTS: '3',
      WEBHOOK_BACKOFF_MS: '50',
    }
    try {
      await using a = await startTestNode(env)
      await using b = await startTestNode(env)
      await using _worker = await startTestWorker(env)

      const writer = connectClient(a.url, 'team/plan')
      await writer.synced()
      writer.doc.getText('body').insert(0, 'hello')
      const created = await vi.waitFor(
        () => {
          const [d] = flaky.delivered('document.created')
          expect(d).toBeDefined()
          return d as Delivery
        },
        { timeout: 30_000, interval: 100 },
      )
      expect(created.attempt).toBe(3)
      expect(created.payload.doc).toBe('team/plan')
      expect(created.payload.data.document).toEqual({ body: 'hello' })
      const firstId = created.payload.data.id
      expect(firstId).toMatch(/^\d+-\d+$/)
      // Stored when sent: GET answers with the same id.
      const stored = await fetch(`${a.httpUrl}/docs/team%2Fplan`)
      expect(stored.headers.get('x-streambed-up-to')).toBe(firstId)

      // An edit through the other node: updated, with the id it replaces.
      const other = connectClient(b.url, 'team/plan')
      await other.synced()
      other.doc.getText('body').insert(5, ' world')
      const updated = await vi.waitFor(
        () => {
          const d = flaky.delivered('document.updated').at(-1)
          expect(d?.payload.data.document).toEqual({ body: 'hello world' })
          return d as Delivery
        },
        { timeout: 30_000, interval: 100 },
      )
      expect(updated.payload.data.previous).toBe(firstId)

      // Editors leave first: a connected y-websocket provider would write its copy back.
      writer.destroy()
      other.destroy()
      const del = await fetch(`${b.httpUrl}/docs/team%2Fplan`, { method: 'DELETE' })
      expect(del.status).toBe(200)
      await vi.waitFor(() => expect(flaky.delivered('document.deleted')).toHaveLength(1), {
        timeout: 30_000,
        interval: 100,
      })
      // Every request was signed; each delivery id kept across its attempts.
      expect(flaky.seen.every((d) => d.signed)).toBe(true)
      for (const type of ['document.created', 'document.deleted']) {
        const ids = new Set(
          flaky.seen.filter((d) => d.payload.type === type).map((d) => d.payload.id),
        )
        expect(ids.size).toBe(1)
      }

      // The endpoint that was down: once nothing is left to try, its deliveries wait in the
      // failed set to be resent.
      await vi.waitFor(
        async () => {
          const counts = (await cli(prefix, ['status'])) as Record<string, number>
          expect(counts.waiting! + counts.delayed! + counts.active!).toBe(0)
        },
        { timeout: 30_000, interval: 500 },
      )
      const failed = (await cli(prefix, ['failed'])) as { type: string; url: string }[]
      expect(failed.map((f) => f.type)).toEqual(
        expect.arrayContaining(['document.created', 'document.deleted']),
      )
      expect(failed.every((f) => f.url === down.url)).toBe(true)
      expect(down.seen.filter((d) => d.payload.type === 'document.created')).toHaveLength(3)
      up = true
      expect(await cli(prefix, ['resend', '--all'])).toEqual({ resent: failed.length })
      await vi.waitFor(
        () => {
          expect(down.delivered('document.created')).toHaveLength(1)
          expect(down.delivered('document.deleted')).toHaveLength(1)
        },
        { timeout: 30_000, interval: 100 },
      )
      expect(await cli(prefix, ['failed'])).toEqual([])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
