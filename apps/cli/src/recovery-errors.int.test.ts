/**
 * Bad input to the operator's commands (issue 9): each is refused with one clear line on stderr
 * and the exit code of its error (README, "Close codes and error codes": NOT_FOUND 66,
 * BAD_MESSAGE 65, CONFIG 78, REDIS_UNAVAILABLE 69), and nothing of the deployment is overwritten.
 */
import { cp, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { formatTime } from '@streambed/recovery'
import { startTestNode, type TestNode } from '@streambed/server/testing'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import {
  type CliRun,
  describeRun,
  errorOf,
  jsonOf,
  type LosableStorage,
  runCli,
  startLosableStorage,
} from './testing/recovery.js'

const redis = useRedisServer()

const update = (edit: (doc: Y.Doc) => void): Uint8Array => {
  const doc = new Y.Doc()
  edit(doc)
  return Y.encodeStateAsUpdate(doc)
}

/** Expects the exit code and the message of a refused command. */
const refused = (run: CliRun, code: number, message: string | RegExp) => {
  expect(run.code, describeRun(run)).toBe(code)
  if (typeof message === 'string') expect(errorOf(run)).toContain(message)
  else expect(errorOf(run)).toMatch(message)
  expect(run.stdout).toBe('')
}

/** Files (not directories) anywhere under `dir`. */
const filesUnder = async (dir: string): Promise<string[]> =>
  (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  )

describe('refused input', () => {
  let storage: LosableStorage
  let node: TestNode
  let env: Record<string, string>
  let scratch: string
  let backup: string
  let createdAtMs: number
  const docs = ['notes/a', 'notes/b']

  /** Everything the deployment holds: its Redis keys (jobs aside), each document as served. */
  const deployment = async () => {
    const keys = (await redis.admin.keys(`${env.REDIS_PREFIX}:*`))
      .filter((k) => !k.includes(':{jobs}:'))
      .sort()
    const served = await Promise.all(
      docs.map(async (doc) => {
        const res = await fetch(`${node.httpUrl}/docs/${doc}`)
        const body = Buffer.from(await res.arrayBuffer()).toString('base64')
        return { doc, upTo: res.headers.get('x-streambed-up-to'), body }
      }),
    )
    const types = await Promise.all(keys.map((k) => redis.admin.type(k)))
    return { keys, types, served }
  }
  let before: Awaited<ReturnType<typeof deployment>>

  /** A copy of the backup to damage. */
  const copyOfBackup = async (name: string) => {
    const dir = join(scratch, name)
    await cp(backup, dir, { recursive: true })
    return dir
  }

  beforeAll(async () => {
    storage = await startLosableStorage('fs')
    env = { REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix('refused'), ...storage.env }
    node = await startTestNode(env)
    const post = async (doc: string, body: Uint8Array) => {
      const res = await fetch(`${node.httpUrl}/docs/${doc}`, { method: 'POST', body })
      return (await res.json()) as { id: string }
    }
    const first = await post(
      'notes/a',
      update((d) => d.getText('t').insert(0, 'first')),
    )
    createdAtMs = Number(first.id.split('-')[0])
    await post(
      'notes/a',
      update((d) => d.getMap('m').set('k', 1)),
    )
    await post(
      'notes/b',
      update((d) => d.getArray('l').push([1, 2])),
    )
    scratch = await mkdtemp(join(tmpdir(), 'streambed-refused-'))
    backup = join(scratch, 'backup')
    const made = await runCli(['backup', backup, '--inline', '--json'], env)
    expect(jsonOf<{ totals: { documents: number } }>(made).totals.documents).toBe(2)
    before = await deployment()
  })
  afterAll(async () => {
    await node?.close()
    await storage?.close()
    await rm(scratch, { recursive: true, force: true })
  })

  it('refuses damaged or missing backups, naming what is wrong, and writes nothing', async () => {
    const corrupted = await copyOfBackup('corrupted')
    const tail = join(corrupted, 'docs', 'notes%2Fa', 'tail.ylog')
    const bytes = await readFile(tail)
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff
    await writeFile(tail, bytes)

    const badSum = await copyOfBackup('bad-sum')
    const manifestPath = join(badSum, 'manifest.json')
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as {
      documents: { objects: { path: string; sha256: string }[] }[]
    }
    const object = manifest.documents[1]!.objects[0]!
    object.sha256 = '0'.repeat(64)
    await writeFile(manifestPath, JSON.stringify(manifest))

    // An empty deployment for the damaged restores: it must stay empty.
    const empty = await startLosableStorage('fs')
    const emptyEnv = { ...env, REDIS_PREFIX: uniquePrefix('empty'), ...empty.env }
    try {
      const missing = join(scratch, 'no-such-backup')
      const [none, damaged, wrongSum, forced] = await Promise.all([
        runCli(['restore', missing, '--inline'], emptyEnv),
        runCli(['restore', corrupted, '--inline'], emptyEnv),
        runCli(['restore', badSum, '--inline'], emptyEnv),
        // Forced over the live deployment: the check comes before anything is written.
        runCli(['restore', badSum, '--inline', '--force'], env),
      ])
      refused(
        none,
        66,
        `no backup at ${missing}: manifest.json is missing (a backup writes it last, so an unfinished backup has none)`,
      )
      refused(damaged, 65, `backup ${corrupted} is damaged: docs/notes%2Fa/tail.ylog: sha256 `)
      refused(wrongSum, 65, `${object.path}: sha256 `)
      expect(errorOf(wrongSum)).toContain(`the manifest says ${'0'.repeat(64)}`)
      refused(forced, 65, `${object.path}: sha256 `)

      expect(await redis.admin.keys(`${emptyEnv.REDIS_PREFIX}:v1:{[^j]*`)).toEqual([])
      expect(await filesUnder(empty.env.STORAGE_DIR!)).toEqual([])
      expect(await deployment()).toEqual(before)
    } finally {
      await empty.close()
    }
  })

  it('verify --backup lists each damaged file and exits 65', async () => {
    const damaged = await copyOfBackup('verify-damaged')
    const path = 'docs/notes%2Fb/log.ylog'
    const bytes = await readFile(join(damaged, ...path.split('/')))
    bytes[0] = bytes[0]! ^ 0xff
    await writeFile(join(damaged, ...path.split('/')), bytes)
    const [plain, json] = await Promise.all([
      runCli(['verify', '--backup', damaged, '--inline'], env),
      runCli(['verify', '--backup', damaged, '--inline', '--json'], env),
    ])
    expect(json.code, describeRun(json)).toBe(65)
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: false,
      documents: 2,
      failed: 1,
      failures: [{ doc: 'notes/b', path, problem: expect.stringMatching(/^sha256 /) as string }],
    })
    expect(plain.code, describeRun(plain)).toBe(65)
    expect(errorOf(plain)).toBe('verification found mismatches (listed above)')
    const [heading, ...listed] = plain.stdout.trimEnd().split('\n')
    expect(heading).toBe('MISMATCHES:')
    expect(listed).toHaveLength(1)
    expect(JSON.parse(listed[0]!)).toMatchObject({ doc: 'notes/b', path })
  })

  it('refuses to restore into a deployment that holds documents unless forced', async () => {
    const run = await runCli(['restore', backup, '--inline'], env)
    refused(run, 78, 'the restore target is not empty: ')
    expect(errorOf(run)).toContain(
      `Redis (prefix ${env.REDIS_PREFIX}) holds streams of documents: notes/a, notes/b`,
    )
    expect(await deployment()).toEqual(before)
  })

  it('refuses times before a document existed, and times that are not times', async () => {
    const early = createdAtMs - 60_000
    const [exportEarly, restoreEarly, exportBad, restoreBad, noAt] = await Promise.all([
      runCli(['export', 'notes/a', '--at', String(early), '--format', 'json'], env),
      runCli(['restore-doc', 'notes/a', '--at', formatTime(early)], env),
      runCli(['export', 'notes/a', '--at', 'yesterday-ish'], env),
      runCli(['restore-doc', 'notes/a', '--at', '2026-02-30T10:00:00Z'], env),
      runCli(['restore-doc', 'notes/a'], env),
    ])
    const notYet = `document notes/a did not exist at ${formatTime(early)}; its history starts at ${formatTime(createdAtMs)}`
    refused(exportEarly, 66, notYet)
    refused(restoreEarly, 66, notYet)
    refused(exportBad, 78, '--at: not a time: "yesterday-ish"; expected an ISO 8601 time')
    refused(
      restoreBad,
      78,
      '--at: not a time: "2026-02-30T10:00:00Z" (no such date or time of day)',
    )
    refused(noAt, 78, 'give --at <time>')
    expect(noAt.stderr).toContain('Usage: streambed restore-doc <doc> --at <time>')
    expect(await deployment()).toEqual(before)
  })

  it('refuses unknown flags with the usage, and backup without a worker unless --inline', async () => {
    const dest = join(scratch, 'not-written')
    const [flag, otherFlag, noWorker] = await Promise.all([
      runCli(['backup', dest, '--fast'], env),
      runCli(['restore', backup, '--inline', '--dry-run'], env),
      runCli(['backup', dest], env),
    ])
    refused(flag, 78, "Unknown option '--fast'")
    expect(flag.stderr).toContain('Usage: streambed backup <dest>')
    refused(otherFlag, 78, "Unknown option '--dry-run'")
    expect(otherFlag.stderr).toContain('Usage: streambed restore <src>')
    refused(
      noWorker,
      69,
      'no worker takes operations (start "streambed worker"), or run it here with --inline',
    )
    expect(await exists(dest)).toBe(false)
    expect(await deployment()).toEqual(before)
  })
})
