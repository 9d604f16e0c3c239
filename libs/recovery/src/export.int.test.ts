import * as Y from 'yjs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { isAppError } from '@streambed/common'
import { createKeys, createRedis, type Keys } from '@streambed/streams'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import type { RecoveryDeps } from './documents.js'
import { exportDocument, importDocument } from './export.js'
import { compact, depsOf, jsonOf, openSpace, servedJSON, writer } from './testing/world.js'

const fx = useRedisServer()

const T0 = Math.ceil((Date.now() + 3_600_000) / 60_000) * 60_000

describe('export and import', () => {
  let keys: Keys
  let space: Awaited<ReturnType<typeof openSpace>>
  let deps: RecoveryDeps
  beforeEach(async () => {
    keys = createKeys(uniquePrefix('export'))
    space = await openSpace('fs')
    deps = depsOf(fx.admin, keys, space.storage)
  })
  afterEach(() => space.close())

  it('exports what a joining client receives, as an update or JSON, now or at a time', async () => {
    const w = writer(deps, 'doc', 3)
    await w.transact((d) => d.getText('t').insert(0, 'first'), T0)
    await compact(deps, fx.blocking, 'doc')
    await w.transact((d) => d.getText('t').insert(5, ' second'), T0 + 60_000)

    const now = await exportDocument(deps, 'doc', { format: 'update' })
    expect(now.format).toBe('update')
    expect(now.exact).toBe(true)
    const update = now.format === 'update' ? now.update : new Uint8Array()
    expect(JSON.stringify(jsonOf(update))).toBe(await servedJSON(deps, 'doc'))

    const json = await exportDocument(deps, 'doc', { format: 'json' })
    expect(json).toMatchObject({ format: 'json', json: { t: 'first second' }, upTo: now.upTo })

    const then = await exportDocument(deps, 'doc', { format: 'json', atMs: T0 + 30_000 })
    expect(then).toMatchObject({ json: { t: 'first' }, exact: true, asOf: T0 + 30_000 })

    const err = await exportDocument(deps, 'nothing', { format: 'json' }).catch((e: unknown) => e)
    expect(isAppError(err, 'NOT_FOUND')).toBe(true)
  })

  it('imports an update through the normal write path: clients hear it, twice adds nothing', async () => {
    const source = new Y.Doc()
    source.getText('t').insert(0, 'imported')
    source.getMap('m').set('k', 1)
    source.getText('t').delete(0, 2)
    const bytes = Y.encodeStateAsUpdate(source)

    const sub = createRedis({ url: fx.url })
    const rang: string[] = []
    sub.on('smessageBuffer', (_: Buffer, m: Buffer) => rang.push(m.toString('latin1', 0, 2)))
    await sub.ssubscribe(keys.channel('target'))
    try {
      const first = await importDocument(deps, 'target', bytes, 'cli/import')
      expect(first.appended).not.toBeNull()
      await expect.poll(() => rang).toEqual(['u '])
      expect(await servedJSON(deps, 'target')).toBe(JSON.stringify({ m: { k: 1 }, t: 'ported' }))
      const again = await importDocument(deps, 'target', bytes, 'cli/import')
      expect(again.appended).toBeNull()
      expect(await fx.admin.xlen(keys.stream('target'))).toBe(1)
    } finally {
      sub.disconnect()
    }
  })

  it('refuses bytes that are not an update, appending nothing', async () => {
    for (const bytes of [Buffer.from('hello world'), new Uint8Array([1, 2, 3])]) {
      const err = await importDocument(deps, 'x', bytes, 'cli/import').catch((e: unknown) => e)
      expect(isAppError(err, 'BAD_MESSAGE')).toBe(true)
    }
    expect(await fx.admin.exists(keys.stream('x'))).toBe(0)
  })
})
