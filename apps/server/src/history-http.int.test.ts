import * as Y from 'yjs'
import { expect, it, vi } from 'vitest'
import { idTimeMs } from '@streambed/common'
import { connectClient, uniquePrefix, useRedisServer } from '@streambed/testing'
import { startTestNode } from './testing/test-node.js'

const redis = useRedisServer()

/** POSTs the update `edit` makes to a fresh client document, as its own writer. */
const post = async (url: string, edit: (doc: Y.Doc) => void): Promise<string> => {
  const doc = new Y.Doc()
  const updates: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => updates.push(u))
  edit(doc)
  const res = await fetch(url, { method: 'POST', body: Y.mergeUpdates(updates) })
  expect(res.status).toBe(200)
  return ((await res.json()) as { id: string }).id
}

const textOf = (bytes: ArrayBuffer) => {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, new Uint8Array(bytes))
  return doc.getMap('m').toJSON()
}

it('lists a document’s history, reads it as it was, and restores it with a forward update', async () => {
  await using node = await startTestNode({ REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix('hist') })
  const api = `${node.httpUrl}/docs/team/plan`
  const phase1 = await post(api, (d) => d.getMap('m').set('phase', 1))
  await vi.waitFor(async () => expect(Date.now()).toBeGreaterThan(idTimeMs(phase1) + 20))
  const phase2 = await post(api, (d) => d.getMap('m').set('step', 'two'))
  await vi.waitFor(async () => expect(Date.now()).toBeGreaterThan(idTimeMs(phase2) + 20))
  await post(api, (d) => d.getMap('m').set('late', true))

  const history = (await (await fetch(`${api}/history?bucket=1ms`)).json()) as {
    versions: { at: number; upTo: string }[]
  }
  expect(history.versions.map((v) => v.upTo)).toContain(phase2)

  // The document as it was right after phase 2: the late edit is not there.
  const at = new Date(idTimeMs(phase2)).toISOString()
  const past = await fetch(`${api}?at=${encodeURIComponent(at)}`)
  expect(past.status).toBe(200)
  expect(textOf(await past.arrayBuffer())).toEqual({ phase: 1, step: 'two' })

  // A live client converges to the restored version without reloading.
  const live = connectClient(node.url, 'team/plan')
  await live.synced()
  expect(live.doc.getMap('m').get('late')).toBe(true)
  const restore = await fetch(`${api}/restore`, {
    method: 'POST',
    body: JSON.stringify({ at }),
  })
  expect(restore.status).toBe(200)
  expect(await restore.json()).toMatchObject({ appended: true, exact: true })
  await vi.waitFor(() => expect(live.doc.getMap('m').toJSON()).toEqual({ phase: 1, step: 'two' }))
  const now = await fetch(api)
  expect(textOf(await now.arrayBuffer())).toEqual({ phase: 1, step: 'two' })
  // Nothing is lost: the undone edit is still in the history.
  const later = await fetch(`${api}?at=now`)
  expect(textOf(await later.arrayBuffer())).toEqual({ phase: 1, step: 'two' })
  live.destroy()
})

it('answers bad times, times before the document and restores without a time clearly', async () => {
  await using node = await startTestNode({ REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix('hist') })
  const api = `${node.httpUrl}/docs/d`
  const first = await post(api, (d) => d.getMap('m').set('a', 1))
  const bad = await fetch(`${api}?at=yesterday-ish`)
  expect(bad.status).toBe(400)
  expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('BAD_MESSAGE')
  const before = await fetch(`${api}?at=${idTimeMs(first) - 60_000}`)
  expect(before.status).toBe(404)
  expect(((await before.json()) as { error: { message: string } }).error.message).toMatch(
    /did not exist/,
  )
  const noAt = await fetch(`${api}/restore`, { method: 'POST', body: '{}' })
  expect(noAt.status).toBe(400)
  const unknown = await fetch(`${node.httpUrl}/docs/never-written/history`)
  expect(unknown.status).toBe(200)
  expect(((await unknown.json()) as { versions: unknown[] }).versions).toEqual([])
})
