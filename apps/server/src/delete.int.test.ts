/**
 * DELETE /docs/<name> against real nodes, a real worker and fs storage: who may delete, what goes
 * (Redis state, stored state, history), what the connected clients see (4405, no reconnect), and
 * that the name starts over as a new, empty document.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { SignJWT } from 'jose'
import { expect, it, vi } from 'vitest'
import { CloseCode, createLogger } from '@streambed/common'
import { openStorage } from '@streambed/storage'
import { connectClient, uniquePrefix, useRedisServer } from '@streambed/testing'
import { parseWorkerConfig } from '@streambed/worker-app'
import { startTestWorker } from '@streambed/worker-app/testing'
import { startTestNode } from './testing/test-node.js'

const redis = useRedisServer()
const SECRET = 'delete-test-secret-of-32-or-more-characters!'

const sign = (claims: Record<string, unknown>) =>
  new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .sign(new TextEncoder().encode(SECRET))

const textOf = (bytes: ArrayBuffer): string => {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, new Uint8Array(bytes))
  return doc.getText('t').toString()
}

it('deletes a document everywhere: sockets closed with 4405, storage and history gone, the name starts over', async () => {
  const prefix = uniquePrefix('delete')
  const dir = await mkdtemp(join(tmpdir(), 'streambed-delete-'))
  const env = {
    REDIS_URL: redis.url,
    REDIS_PREFIX: prefix,
    STORAGE_DIR: dir,
    AUTH_MODE: 'jwt',
    AUTH_JWT_SECRET: SECRET,
  }
  await using a = await startTestNode(env)
  await using b = await startTestNode(env)
  await using _worker = await startTestWorker({
    ...env,
    COMPACT_IDLE_MS: '50',
    COMPACT_INTERVAL_MS: '200',
    MIN_MESSAGE_LIFETIME_MS: '0',
  })
  const storage = await openStorage(parseWorkerConfig(env), createLogger({ level: 'silent' }))
  try {
    const doc = 'team/notes'
    const writer = await sign({ docs: ['team/*'] })
    const deleter = await sign({ docs: ['team/*'], delete: true })
    const readOnly = await sign({ docs: ['team/*'], access: 'read', delete: true })
    const elsewhere = await sign({ docs: ['other/*'], delete: true })

    const alice = connectClient(a.url, doc, { params: { token: writer } })
    const bob = connectClient(b.url, doc, { params: { token: writer } })
    const closes: (number | undefined)[][] = [[], []]
    alice.provider.on('connection-close', (e: { code: number } | null) => closes[0]!.push(e?.code))
    bob.provider.on('connection-close', (e: { code: number } | null) => closes[1]!.push(e?.code))
    await Promise.all([alice.synced(), bob.synced()])
    alice.doc.getText('t').insert(0, 'secret plans')
    await vi.waitFor(() => expect(bob.doc.getText('t').toString()).toBe('secret plans'))
    // Compacted into storage (with its history), then one more edit still in the stream.
    await vi.waitFor(async () => expect(await storage.watermark(doc)).not.toBeNull(), {
      timeout: 20_000,
    })
    bob.doc.getText('t').insert(0, 'more ')
    await vi.waitFor(() => expect(alice.doc.getText('t').toString()).toBe('more secret plans'))
    expect((await storage.logExtent(doc))?.entries).toBeGreaterThan(0)

    const api = `${b.httpUrl}/docs/${doc}`
    const del = (token?: string) =>
      fetch(api, {
        method: 'DELETE',
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      })
    // Who may not: no token, a token without the claim, a read-only token, another namespace.
    expect((await del()).status).toBe(401)
    for (const token of [writer, readOnly, elsewhere]) {
      const res = await del(token)
      expect(res.status).toBe(403)
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(
        /delet|grant/,
      )
    }
    expect(alice.doc.getText('t').toString()).toBe('more secret plans')

    const res = await del(deleter)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ deleted: true })

    // Both editors are told, on both nodes, and y-websocket does not reconnect after a 44xx close.
    await vi.waitFor(() =>
      expect(closes).toEqual([[CloseCode.documentDeleted], [CloseCode.documentDeleted]]),
    )
    await new Promise((r) => setTimeout(r, 800))
    expect(alice.provider.wsconnected || bob.provider.wsconnected).toBe(false)
    expect(closes).toEqual([[CloseCode.documentDeleted], [CloseCode.documentDeleted]])

    // Nothing is left: Redis, storage, history.
    expect(await redis.admin.exists(`${prefix}:v1:{${doc}}:s`, `${prefix}:v1:{${doc}}:a`)).toBe(0)
    expect(await storage.load(doc)).toBeNull()
    expect(await storage.logExtent(doc)).toBeNull()
    const read = await fetch(`${a.httpUrl}/docs/${doc}`, {
      headers: { authorization: `Bearer ${writer}` },
    })
    expect(read.status).toBe(200)
    expect(textOf(await read.arrayBuffer())).toBe('')
    const history = await fetch(`${a.httpUrl}/docs/${doc}/history`, {
      headers: { authorization: `Bearer ${writer}` },
    })
    expect(((await history.json()) as { versions: unknown[] }).versions).toEqual([])

    // The name starts over: a new editor writes from clock 0 and a joiner on the other node sees
    // only the new content, before and after compaction.
    const carol = connectClient(a.url, doc, { params: { token: writer } })
    await carol.synced()
    expect(carol.doc.getText('t').toString()).toBe('')
    carol.doc.getText('t').insert(0, 'fresh start')
    const dave = connectClient(b.url, doc, { params: { token: writer } })
    await dave.synced()
    await vi.waitFor(() => expect(dave.doc.getText('t').toString()).toBe('fresh start'))
    await vi.waitFor(
      async () => {
        const stored = await storage.load(doc)
        expect(stored).not.toBeNull()
        const check = new Y.Doc()
        Y.applyUpdate(check, stored!.state)
        expect(check.getText('t').toString()).toBe('fresh start')
      },
      { timeout: 20_000 },
    )
    for (const c of [alice, bob, carol, dave]) c.destroy()

    // Deleting what is not there is not an error.
    const again = await fetch(`${a.httpUrl}/docs/team/never`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${deleter}` },
    })
    expect(await again.json()).toMatchObject({ deleted: false })
  } finally {
    await storage.close()
    await rm(dir, { recursive: true, force: true })
  }
})
