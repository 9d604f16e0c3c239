/**
 * The disaster-recovery drill at library level: documents with content in storage, the update log,
 * checkpoints and stream tails → backup (a directory and an S3 prefix) → Redis and storage lost →
 * restore → verify → every document reads as before. Operations run through libs/jobs, inline and
 * on a worker.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { type AppError, isAppError, silentLogger, type StreamId } from '@streambed/common'
import { createJobs, type Jobs } from '@streambed/jobs'
import { inspectUpdate } from '@streambed/protocol'
import { createKeys, createRedis, type Keys, readDocument, type Redis } from '@streambed/streams'
import {
  s3ClientOptions,
  startS3Server,
  type S3Server,
  uniquePrefix,
  useRedisServer,
} from '@streambed/testing'
import { openBackupTarget } from './backup-target.js'
import { sha256Hex } from './backup.js'
import type { RecoveryDeps } from './documents.js'
import { readManifest } from './manifest.js'
import {
  type BackupSummary,
  createRecoveryOperations,
  type RestoreSummary,
  type VerifySummary,
} from './operations.js'
import { verifyDocument } from './verify.js'
import {
  compact,
  depsOf,
  openSpace,
  servedJSON,
  type StorageKind,
  writer,
} from './testing/world.js'

const fx = useRedisServer()
let s3: S3Server
beforeAll(async () => {
  s3 = await startS3Server()
})
afterAll(() => s3.close())

/** 150 `:` escape to 450 characters: the storage and backup names of this one are hashed. */
const LONG = `long/${':'.repeat(150)}`
const DOCS = [...Array.from({ length: 18 }, (_, i) => `drill/doc-${i}`), 'Team:A/notes~1', LONG]

interface Before {
  json: string
  tailIds: StreamId[]
  logIds: StreamId[]
  checkpoints: StreamId[]
  watermark: StreamId | null
}

/** Everything that says what a document is, to compare after a restore. */
const snapshot = async (deps: RecoveryDeps, doc: string): Promise<Before> => {
  const read = await readDocument(deps.storage, deps.streams, doc)
  return {
    json: await servedJSON(deps, doc),
    tailIds: read.tail.entries.map((e) => e.id),
    logIds: (await deps.storage.readLog(doc)).map((e) => e.id),
    checkpoints: await deps.storage.listCheckpoints(doc),
    watermark: read.stored?.watermark ?? null,
  }
}

/**
 * The 20 documents: edits compacted into storage (twice for some: the log grows), checkpoints on
 * some, a stream tail on most, tails only on a few (never compacted).
 */
const populate = async (deps: RecoveryDeps, blocking: Redis) => {
  for (const [i, doc] of DOCS.entries()) {
    const w = writer(deps, doc, 1000 + i)
    await w.edit(5)
    if (i % 5 === 4) {
      await w.edit(3)
      continue
    }
    await compact(deps, blocking, doc)
    if (i % 3 === 0) {
      const stored = await deps.storage.load(doc)
      await deps.storage.putCheckpoint(doc, { upTo: stored!.watermark, state: stored!.state })
    }
    await w.edit(4)
    if (i % 2 === 0) await compact(deps, blocking, doc)
    await w.edit(3)
  }
}

const rejection = async (p: Promise<unknown>): Promise<AppError> => {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  )
  expect(isAppError(err), String(err)).toBe(true)
  return err as AppError
}

describe.each<StorageKind>(['fs', 'postgres'])('recovery drill on %s storage', (kind) => {
  let keys: Keys
  let space: Awaited<ReturnType<typeof openSpace>>
  let deps: RecoveryDeps & { s3: ReturnType<typeof s3ClientOptions> }
  let dir: string
  const connections: Redis[] = []
  const jobsList: Jobs[] = []
  const before = new Map<string, Before>()

  /** A jobs handle over the current deps (an operation binds the storage it was made with). */
  const jobsOf = () => {
    const connection = createRedis({ url: fx.url, maxRetriesPerRequest: null })
    connections.push(connection)
    const jobs = createJobs({
      connection,
      redisPrefix: keys.prefix,
      logger: silentLogger(),
      operations: createRecoveryOperations(deps),
      lockMs: 2000,
      attempts: 1,
    })
    jobsList.push(jobs)
    return jobs
  }

  /** Redis and storage lost: FLUSHALL and a new, empty storage. */
  const disaster = async () => {
    await fx.admin.flushall()
    await space.close()
    space = await openSpace(kind)
    deps = { ...depsOf(fx.admin, keys, space.storage), s3: s3ClientOptions(s3) }
  }

  const expectAsBefore = async () => {
    for (const doc of DOCS) {
      const now = await snapshot(deps, doc)
      expect(now, doc).toEqual(before.get(doc))
    }
  }

  beforeAll(async () => {
    keys = createKeys(uniquePrefix(`drill-${kind}`))
    space = await openSpace(kind)
    deps = { ...depsOf(fx.admin, keys, space.storage), s3: s3ClientOptions(s3) }
    dir = await mkdtemp(join(tmpdir(), 'streambed-drill-'))
    await populate(deps, fx.blocking)
    for (const doc of DOCS) before.set(doc, await snapshot(deps, doc))
  })
  afterEach(async () => {
    for (const j of jobsList.splice(0)) await j.close(true)
  })
  afterAll(async () => {
    for (const c of connections) c.disconnect()
    await space.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('has the content the drill needs', () => {
    const all = [...before.values()]
    expect(all.every((b) => b.json !== '{}')).toBe(true)
    expect(all.filter((b) => b.watermark === null)).toHaveLength(4)
    expect(all.filter((b) => b.tailIds.length > 0)).toHaveLength(DOCS.length)
    expect(all.filter((b) => b.checkpoints.length > 0).length).toBeGreaterThan(3)
    expect(all.filter((b) => b.logIds.length > 5).length).toBeGreaterThan(3)
  })

  it('backs up to a directory and an S3 prefix, restores each into an empty deployment', async () => {
    const dest = join(dir, 'full')
    const s3Dest = `s3://${await s3.createBucket('drill')}/backups/full/`
    const jobs = jobsOf()
    const summary = (await jobs.runInline('backup', { dest, batchSize: 6 })) as BackupSummary
    expect(summary.totals).toMatchObject({ documents: 20 })
    expect(summary.totals.tailEntries).toBe(
      [...before.values()].reduce((n, b) => n + b.tailIds.length, 0),
    )
    const s3Summary = (await jobs.runInline('backup', { dest: s3Dest })) as BackupSummary
    expect(s3Summary.totals).toEqual(summary.totals)
    // A destination holding a backup is refused.
    expect((await rejection(jobs.runInline('backup', { dest }))).code).toBe('CONFIG')

    const manifest = await readManifest(openBackupTarget(dest))
    expect(manifest.documents.map((d) => d.name)).toEqual([...DOCS].sort())
    expect(manifest.redisPrefix).toBe(keys.prefix)

    await disaster()
    const restored = (await jobsOf().runInline('restore', {
      src: dest,
      batchSize: 7,
    })) as RestoreSummary
    expect(restored).toMatchObject({ documents: 20, statesWritten: 16, tasks: 20 })
    const verified = (await jobsOf().runInline('verify', {})) as VerifySummary
    expect(verified).toMatchObject({ ok: true, documents: 20, failed: 0 })
    await expectAsBefore()
    // Tails came back with their ids and one task each; the clock map is left to the next append.
    const meta = await fx.admin.hgetall(keys.meta(DOCS[0]!))
    expect(meta.clocks).toBeUndefined()
    expect(meta.task).toBeDefined()

    // From S3, through a worker this time.
    await disaster()
    const client = jobsOf()
    jobsOf().startWorker(2)
    const id = await client.submit('restore', { src: s3Dest, batchSize: 5 })
    const status = await client.follow(id, () => undefined, 50)
    expect(status).toMatchObject({ state: 'completed', done: 4, total: 4 })
    // Read again: jobs.status loads the job before its state, so the poll that first sees it
    // completed may carry no result yet (a race in libs/jobs, reported).
    const final = await client.status(id)
    expect(final.result).toMatchObject({ documents: 20, statesWritten: 16, tasks: 20 })
    await expectAsBefore()
    const verifiedS3 = (await client.runInline('verify', {})) as VerifySummary
    expect(verifiedS3.ok).toBe(true)
  })

  it('refuses to restore into a deployment that is not empty, and a forced restore changes nothing', async () => {
    const dest = join(dir, 'again')
    const jobs = jobsOf()
    await jobs.runInline('backup', { dest })
    const err = await rejection(jobs.runInline('restore', { src: dest }))
    expect(err.code).toBe('CONFIG')
    expect(err.message).toMatch(/not empty/)
    expect(err.message).toMatch(/drill\/doc-0/)
    const forced = (await jobs.runInline('restore', { src: dest, force: true })) as RestoreSummary
    expect(forced).toMatchObject({
      documents: 20,
      statesWritten: 0,
      statesPresent: 16,
      tailAdded: 0,
      tasks: 0,
      rebuilt: [],
    })
    await expectAsBefore()
  })

  it('serves restored documents normally: new edits append, compaction stores the restored tails', async () => {
    const dest = join(dir, 'then-edit')
    await jobsOf().runInline('backup', { dest })
    await disaster()
    await jobsOf().runInline('restore', { src: dest })
    for (const [i, doc] of DOCS.slice(0, 6).entries()) {
      // A client that was connected: it holds the document, and keeps editing.
      const w = writer(deps, doc, 5000 + i)
      const read = await readDocument(deps.storage, deps.streams, doc)
      for (const p of [read.stored?.state, ...read.tail.entries.map((e) => e.update)])
        if (p) Y.applyUpdate(w.ydoc, p)
      // Resending everything it has adds no content (the clock map was seeded from the restore);
      // its delete set is appended as it is (deletions are not checked against the map).
      const resent = await deps.streams.append(doc, Y.encodeStateAsUpdate(w.ydoc), 'test/resend')
      if (resent) {
        const [[, fields]] = (await fx.admin.xrangeBuffer(
          keys.stream(doc),
          resent.id,
          resent.id,
        )) as unknown as [[Buffer, Buffer[]]]
        expect(inspectUpdate(fields[1]!).clients.size).toBe(0)
      }
      const ids = await w.edit(2)
      expect(ids.length).toBeGreaterThan(0)
      await compact(deps, fx.blocking, doc)
      expect(await verifyDocument(deps, doc)).toMatchObject({ ok: true })
      expect(await fx.admin.exists(keys.stream(doc))).toBe(0)
    }
  })
})

describe('damaged backups', () => {
  let keys: Keys
  let space: Awaited<ReturnType<typeof openSpace>>
  let deps: RecoveryDeps
  let dir: string
  let dest: string
  let jobs: Jobs
  let connection: Redis
  const docs = ['a', 'b', 'c/d']

  beforeEach(async () => {
    keys = createKeys(uniquePrefix('damaged'))
    space = await openSpace('fs')
    deps = depsOf(fx.admin, keys, space.storage)
    for (const [i, doc] of docs.entries()) {
      const w = writer(deps, doc, 77 + i)
      await w.edit(4)
      await compact(deps, fx.blocking, doc)
      await w.edit(2)
    }
    dir = await mkdtemp(join(tmpdir(), 'streambed-damaged-'))
    dest = join(dir, 'b')
    connection = createRedis({ url: fx.url, maxRetriesPerRequest: null })
    const opsOf = () => createRecoveryOperations(deps)
    jobs = createJobs({
      connection,
      redisPrefix: keys.prefix,
      logger: silentLogger(),
      operations: opsOf(),
    })
    await jobs.runInline('backup', { dest })
    // The disaster: this deployment's Redis keys and storage are gone.
    for (const key of await fx.admin.keys(`${keys.prefix}:*`)) await fx.admin.del(key)
    await space.close()
    space = await openSpace('fs')
    deps = depsOf(fx.admin, keys, space.storage)
    await jobs.close()
    jobs = createJobs({
      connection,
      redisPrefix: keys.prefix,
      logger: silentLogger(),
      operations: opsOf(),
    })
  })
  afterEach(async () => {
    await jobs.close()
    connection.disconnect()
    await space.close()
    await rm(dir, { recursive: true, force: true })
  })

  const expectNothingWritten = async () => {
    expect(await fx.admin.keys(`${keys.prefix}:v1:{[^j]*`)).toEqual([])
    expect(await deps.storage.list()).toEqual([])
    expect(await deps.storage.listHistory()).toEqual([])
  }
  const target = () => openBackupTarget(dest)
  const file = (doc: string, name: string) => `docs/${doc.replace('/', '%2F')}/${name}`

  it('a flipped byte: the restore names the file and writes nothing', async () => {
    const path = file('b', 'tail.ylog')
    const bytes = (await target().get(path))!
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff
    await target().put(path, bytes)
    const err = await rejection(jobs.runInline('restore', { src: dest }))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toContain(`${path}: sha256`)
    await expectNothingWritten()
    const verdict = (await jobs.runInline('verify', { backup: dest })) as VerifySummary
    expect(verdict).toMatchObject({ ok: false, failed: 1, documents: 3 })
    expect(verdict.failures).toEqual([
      expect.objectContaining({ doc: 'b', path, problem: expect.stringMatching(/^sha256/) }),
    ])
  })

  it('a missing or truncated file: refused before any batch runs', async () => {
    await rm(join(dest, ...file('a', 'state.ydoc').split('/')))
    const truncated = file('c/d', 'log.ylog')
    const bytes = (await target().get(truncated))!
    await target().put(truncated, bytes.subarray(0, bytes.length - 3))
    const err = await rejection(jobs.runInline('restore', { src: dest, batchSize: 1 }))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toContain(`${file('a', 'state.ydoc')}: missing`)
    expect(err.message).toContain(`${truncated}: ${bytes.length - 3} bytes, the manifest says`)
    await expectNothingWritten()
  })

  it('a wrong checksum in the manifest, and a file replaced consistently with garbage', async () => {
    type Editable = { documents: { objects: { path: string; bytes: number; sha256: string }[] }[] }
    const manifest = JSON.parse(
      Buffer.from((await target().get('manifest.json'))!).toString(),
    ) as Editable
    const [a, b] = manifest.documents as [Editable['documents'][0], Editable['documents'][0]]
    a.objects[0]!.sha256 = '0'.repeat(64)
    // Garbage with its checksum and size in the manifest: the format check catches it.
    const garbage = Buffer.from('not a log batch at all')
    const logObject = b.objects.find((o) => o.path.endsWith('/log.ylog'))!
    logObject.bytes = garbage.length
    logObject.sha256 = sha256Hex(garbage)
    await target().put(logObject.path, garbage)
    await target().put('manifest.json', Buffer.from(JSON.stringify(manifest)))
    const err = await rejection(jobs.runInline('restore', { src: dest }))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toContain(`${a.objects[0]!.path}: sha256`)
    expect(err.message).toContain(`${logObject.path}: does not decode`)
    await expectNothingWritten()
  })

  it('no manifest (an unfinished backup) or a foreign one', async () => {
    await rm(join(dest, 'manifest.json'))
    expect((await rejection(jobs.runInline('restore', { src: dest }))).code).toBe('NOT_FOUND')
    await target().put('manifest.json', Buffer.from('{"format":"something-else"}'))
    const err = await rejection(jobs.runInline('restore', { src: dest }))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toMatch(/format "something-else"/)
    await target().put(
      'manifest.json',
      Buffer.from('{"format":"streambed-backup-v1","documents":[{"name":"x{y}"}]}'),
    )
    expect((await rejection(jobs.runInline('restore', { src: dest }))).message).toMatch(
      /invalid document name/,
    )
    await expectNothingWritten()
  })

  it('restores the intact backup once the damage is repaired (a control)', async () => {
    const result = (await jobs.runInline('restore', { src: dest })) as RestoreSummary
    expect(result).toMatchObject({ documents: 3, statesWritten: 3, tasks: 3 })
    for (const doc of docs) expect(await verifyDocument(deps, doc)).toMatchObject({ ok: true })
  })
})
