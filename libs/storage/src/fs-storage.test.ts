import { mkdir, mkdtemp, readdir, rm, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { afterEach, beforeEach, expect, it, vi } from 'vitest'
import { createLogger } from '@streambed/common'
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

it('logs an old version it cannot delete, and reports the batch stored', async () => {
  const lines: string[] = []
  const destination = new Writable({
    write: (chunk: Buffer, _encoding, done) => {
      lines.push(chunk.toString())
      done()
    },
  })
  const storage = await createFsStorage({
    dir,
    logger: createLogger({ level: 'warn', destination }),
  })
  let expected: string | null = null
  for (const watermark of ['1-0', '2-0']) {
    const next = { state: state(1), watermark }
    const items = ['a', 'b'].map((doc) => ({ doc, expected, next }))
    expect(await storage.compareAndSetMany(items)).toEqual([true, true])
    expected = watermark
  }
  // a's oldest version is a directory now: deleting it fails.
  const oldest = join(dir, 'v1', 'docs', escapeDocName('a'), `${sortableWatermark('1-0')}.ydoc`)
  await unlink(oldest)
  await mkdir(join(oldest, 'inside'), { recursive: true })
  const next = { state: state(3), watermark: '3-0' }
  expect(
    await storage.compareAndSetMany(['a', 'b'].map((doc) => ({ doc, expected: '2-0', next }))),
  ).toEqual([true, true])
  expect(lines.join('')).toContain('could not delete old state versions')
  expect((await storage.loadMany(['a', 'b'])).map((d) => d?.watermark)).toEqual(['3-0', '3-0'])
  expect(await readdir(join(dir, 'v1', 'docs', escapeDocName('b')))).toHaveLength(2)
})

it('breaks a lock left by a killed process', async () => {
  const storage = await createFsStorage({ dir, staleLockMs: 100 })
  await writeFile(join(dir, 'v1', 'locks', `${escapeDocName('doc')}.lock`), 'dead 0\n')
  await new Promise((r) => setTimeout(r, 150))
  expect(await storage.compareAndSet('doc', null, { state: state(1), watermark: '1-0' })).toBe(true)
})

it('stores a batch around a document whose lock another process holds, then that one', async () => {
  const storage = await createFsStorage({ dir })
  const lockFile = join(dir, 'v1', 'locks', `${escapeDocName('held')}.lock`)
  await writeFile(lockFile, `${process.pid} ${Date.now()}\n`)
  let settled = false
  const batch = storage
    .compareAndSetMany(
      ['free', 'held', 'also-free'].map((doc, i) => ({
        doc,
        expected: null,
        next: { state: state(i), watermark: `${i + 1}-0` },
      })),
    )
    .finally(() => (settled = true))
  // The free documents are stored while the batch waits for the held lock.
  await vi.waitFor(async () => expect(await storage.watermark('also-free')).toBe('3-0'))
  expect(await storage.watermark('free')).toBe('1-0')
  expect(settled).toBe(false)
  expect(await storage.watermark('held')).toBeNull()
  await unlink(lockFile)
  expect(await batch).toEqual([true, true, true])
  expect(await storage.load('held')).toEqual({ state: state(1), watermark: '2-0' })
  // Every lock let go, no temporary file left.
  expect((await readdir(join(dir, 'v1', 'locks'))).filter((n) => n !== 'spare')).toEqual([])
  for (const doc of ['free', 'held', 'also-free'])
    expect(await readdir(join(dir, 'v1', 'docs', escapeDocName(doc)))).toHaveLength(1)
})
