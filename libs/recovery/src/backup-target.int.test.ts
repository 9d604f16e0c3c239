import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isAppError } from '@streambed/common'
import { s3ClientOptions, startS3Server, type S3Server } from '@streambed/testing'
import { type BackupTarget, openBackupTarget, subLocation } from './backup-target.js'

let s3: S3Server
const dirs: string[] = []
beforeAll(async () => {
  s3 = await startS3Server()
})
afterAll(async () => {
  await s3.close()
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

const kinds = [
  {
    kind: 'fs',
    open: async () => {
      const dir = await mkdtemp(join(tmpdir(), 'streambed-target-'))
      dirs.push(dir)
      return openBackupTarget(join(dir, 'backups', 'one'))
    },
  },
  {
    kind: 's3',
    open: async () => {
      const bucket = await s3.createBucket('target')
      return openBackupTarget(`s3://${bucket}/backups/one`, { s3: s3ClientOptions(s3) })
    },
  },
] as const

const bytes = (s: string) => new Uint8Array(Buffer.from(s))

describe.each(kinds)('$kind backup target', ({ open }) => {
  let target: BackupTarget
  beforeAll(async () => {
    target = await open()
  })
  afterAll(() => target.close())

  it('stores, replaces, reads back and lists objects by prefix, ascending', async () => {
    expect(await target.get('manifest.json')).toBeNull()
    expect(await target.exists('manifest.json')).toBe(false)
    await target.put('docs/b%2Fc/state.ydoc', bytes('state b'))
    await target.put('docs/a/tail.ylog', bytes('tail a'))
    await target.put('docs/a/checkpoints/000-01.ydoc', bytes('cp'))
    await target.put('manifest.json', bytes('{}'))
    await target.put('manifest.json', bytes('{"x":1}'))
    expect(Buffer.from((await target.get('manifest.json'))!).toString()).toBe('{"x":1}')
    expect(await target.exists('docs/a/tail.ylog')).toBe(true)
    expect(await target.exists('docs/a')).toBe(false)
    expect(await target.list()).toEqual([
      { path: 'docs/a/checkpoints/000-01.ydoc', bytes: 2 },
      { path: 'docs/a/tail.ylog', bytes: 6 },
      { path: 'docs/b%2Fc/state.ydoc', bytes: 7 },
      { path: 'manifest.json', bytes: 7 },
    ])
    expect((await target.list('docs/a/')).map((o) => o.path)).toEqual([
      'docs/a/checkpoints/000-01.ydoc',
      'docs/a/tail.ylog',
    ])
    expect((await target.list('docs/b')).map((o) => o.path)).toEqual(['docs/b%2Fc/state.ydoc'])
    expect(await target.list('nothing/')).toEqual([])
  })

  it('removes a folder and everything below it, and nothing else', async () => {
    await target.put('old/1/x', bytes('1'))
    await target.put('old/1/y/z', bytes('2'))
    await target.put('old/10/x', bytes('3'))
    await target.removeAll('old/1/')
    expect((await target.list('old/')).map((o) => o.path)).toEqual(['old/10/x'])
  })

  it('refuses paths that leave the target', async () => {
    for (const path of ['../x', 'a/../../x', '/abs', 'a//b', 'a\\b', '']) {
      const err = await target.put(path, bytes('x')).catch((e: unknown) => e)
      expect(isAppError(err, 'BAD_MESSAGE'), path).toBe(true)
    }
  })
})

describe('backup locations', () => {
  it('names sub-locations of directories and S3 prefixes', () => {
    expect(subLocation('/backups', '20261127T100000.000Z')).toBe('/backups/20261127T100000.000Z')
    expect(subLocation('s3://b-1/p', 'x')).toBe('s3://b-1/p/x/')
    expect(subLocation('s3://b-1/', 'x')).toBe('s3://b-1/x/')
    expect(openBackupTarget('s3://bucket-a').location).toBe('s3://bucket-a/')
    expect(openBackupTarget('s3://bucket-a/some/prefix').location).toBe(
      's3://bucket-a/some/prefix/',
    )
  })

  it('refuses an S3 location without a valid bucket', () => {
    for (const bad of ['s3://', 's3://UPPER/x', 's3://a']) {
      let err: unknown
      try {
        openBackupTarget(bad)
      } catch (e) {
        err = e
      }
      expect(isAppError(err, 'CONFIG'), bad).toBe(true)
    }
  })

  it('leaves no temporary file behind, and lists none that a crash left', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'streambed-target-'))
    dirs.push(dir)
    const target = openBackupTarget(dir)
    await target.put('docs/a/state.ydoc', bytes('s'))
    expect(await readdir(join(dir, 'docs', 'a'))).toEqual(['state.ydoc'])
    await writeFile(join(dir, 'docs', 'a', '.state.ydoc.123-4.tmp'), 'partial')
    expect((await target.list()).map((o) => o.path)).toEqual(['docs/a/state.ydoc'])
  })
})
