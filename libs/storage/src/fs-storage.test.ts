import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { encodeStateFile, escapeDocName, sortableWatermark } from './encoding.js'
import { createFsStorage } from './fs-storage.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'streambed-fs-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

const state = (n: number) => new Uint8Array([0, 0, n])

it('returns the highest version even when a writer that lost its lock stores an older one late', async () => {
  const storage = await createFsStorage({ dir })
  expect(await storage.compareAndSet('doc', null, { state: state(5), watermark: '5-0' })).toBe(true)
  expect(await storage.compareAndSet('doc', '5-0', { state: state(9), watermark: '9-0' })).toBe(
    true,
  )
  // A writer that read 5-0, stalled past the stale-lock limit and lost its lock, lands 7-0 now.
  const docDir = join(dir, 'v1', 'docs', escapeDocName('doc'))
  await writeFile(
    join(docDir, `${sortableWatermark('7-0')}.ydoc`),
    encodeStateFile('doc', { state: state(7), watermark: '7-0' }),
  )
  expect(await storage.load('doc')).toEqual({ state: state(9), watermark: '9-0' })
  // And compare-and-set keeps going from the highest.
  expect(await storage.compareAndSet('doc', '7-0', { state: state(8), watermark: '8-0' })).toBe(
    false,
  )
  expect(await storage.compareAndSet('doc', '9-0', { state: state(10), watermark: '10-0' })).toBe(
    true,
  )
  expect(await storage.load('doc')).toEqual({ state: state(10), watermark: '10-0' })
})

it('keeps the newest two versions', async () => {
  const storage = await createFsStorage({ dir })
  let expected: string | null = null
  for (const w of ['1-0', '2-0', '3-0', '4-0']) {
    expect(await storage.compareAndSet('doc', expected, { state: state(1), watermark: w })).toBe(
      true,
    )
    expected = w
  }
  const files = await readdir(join(dir, 'v1', 'docs', escapeDocName('doc')))
  expect(files.sort()).toEqual([
    `${sortableWatermark('3-0')}.ydoc`,
    `${sortableWatermark('4-0')}.ydoc`,
  ])
})

it('breaks a lock left by a killed process', async () => {
  const storage = await createFsStorage({ dir, staleLockMs: 100 })
  await writeFile(join(dir, 'v1', 'locks', `${escapeDocName('doc')}.lock`), 'dead 0\n')
  await new Promise((r) => setTimeout(r, 150))
  expect(await storage.compareAndSet('doc', null, { state: state(1), watermark: '1-0' })).toBe(true)
})
