import { mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { createLockFiles } from './lock-files.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'streambed-locks-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

it('holds a document against others until released, reusing its spare file', async () => {
  const mine = await createLockFiles(dir, 30_000)
  const theirs = await createLockFiles(dir, 30_000)
  const unlock = await mine.lock('doc', { wait: false })
  expect(unlock).not.toBeNull()
  const held = await stat(join(dir, 'doc.lock'))
  expect(Date.now() - held.mtimeMs).toBeLessThan(5_000)
  expect(await theirs.lock('doc', { wait: false })).toBeNull()
  await unlock?.()
  expect(await readdir(dir)).toEqual(['spare'])
  // The next lock links the same spare: no file is created or deleted per lock.
  const again = await mine.lock('other', { wait: false })
  expect((await stat(join(dir, 'other.lock'))).ino).toBe(held.ino)
  await again?.()
  expect(await theirs.lock('doc', { wait: false })).not.toBeNull()
  await mine.close()
  await theirs.close()
})

it('breaks a lock older than the stale limit, whoever made it', async () => {
  const locks = await createLockFiles(dir, 100)
  // A lock file as older releases make it, left by a killed process.
  await writeFile(join(dir, 'doc.lock'), 'dead 0\n')
  const old = new Date(Date.now() - 1000)
  await utimes(join(dir, 'doc.lock'), old, old)
  const unlock = await locks.lock('doc', { wait: false })
  expect(unlock).not.toBeNull()
  await unlock?.()
  await locks.close()
})

it('makes a new spare when one starting removed its spare as a dead process', async () => {
  const locks = await createLockFiles(dir, 100)
  await (
    await locks.lock('doc', { wait: false })
  )?.()
  const spare = (await readdir(join(dir, 'spare')))[0] as string
  const old = new Date(Date.now() - 1000)
  await utimes(join(dir, 'spare', spare), old, old)
  const starting = await createLockFiles(dir, 100)
  expect(await readdir(join(dir, 'spare'))).toEqual([])
  const unlock = await locks.lock('doc', { wait: false })
  expect(unlock).not.toBeNull()
  await unlock?.()
  await locks.close()
  await starting.close()
  expect(await readdir(join(dir, 'spare'))).toEqual([])
})
