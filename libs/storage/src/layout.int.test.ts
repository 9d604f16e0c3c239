import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import {
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3'
import { afterAll, describe, expect, it } from 'vitest'
import { startS3Server, type S3Server } from '@streambed/testing'
import { encodeLogBatch, encodeStateFile } from './encoding.js'
import { createFsStorage } from './fs-storage.js'
import { createS3Storage } from './s3-storage.js'
import type { Checkpoint, DocStorage, LogEntry, StoredDoc } from './storage.js'

/**
 * The on-disk and on-bucket layouts are persistent: data written by earlier releases must load.
 * Each backend is given objects at literal paths, as the releases before the shared
 * versioned-object module wrote them, then read and written through the storage. Checkpoints and
 * packed segments are pinned the same way: their paths and bytes are a layout from now on.
 */

interface Place {
  /** Writes `bytes` at `path` (relative to the storage's root) behind the storage's back. */
  write(path: string, bytes: Uint8Array): Promise<void>
  /** The bytes at `path`, as the storage wrote them. */
  read(path: string): Promise<Uint8Array>
  /** Every object's path relative to the root, sorted. */
  paths(): Promise<string[]>
  open(): Promise<DocStorage>
  close(): Promise<void>
}

interface Layout {
  readonly kind: 'fs' | 's3'
  state(escaped: string, sortable: string): string
  log(escaped: string, batch: string): string
  checkpoint(escaped: string, sortable: string): string
  place(): Promise<Place>
}

let s3ServerStarted: Promise<S3Server> | undefined
const s3Server = (): Promise<S3Server> => (s3ServerStarted ??= startS3Server())
afterAll(async () => {
  if (s3ServerStarted) await (await s3ServerStarted).close()
})

const walk = async (dir: string): Promise<string[]> => {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, e.name)
    if (e.isDirectory()) out.push(...(await walk(path)))
    else out.push(path)
  }
  return out
}

const layouts: Layout[] = [
  {
    kind: 'fs',
    state: (escaped, sortable) => `v1/docs/${escaped}/${sortable}.ydoc`,
    log: (escaped, batch) => `v1/log/${escaped}/${batch}.ylog`,
    checkpoint: (escaped, sortable) => `v1/checkpoints/${escaped}/${sortable}.ydoc`,
    place: async () => {
      const dir = await mkdtemp(join(tmpdir(), 'streambed-layout-'))
      const opened: DocStorage[] = []
      return {
        write: async (path, bytes) => {
          await mkdir(dirname(join(dir, path)), { recursive: true })
          await writeFile(join(dir, path), bytes)
        },
        read: (path) => readFile(join(dir, path)),
        // Directories too: delete must not leave a document's directories behind.
        paths: async () =>
          [
            ...(await walk(dir)).map((p) => relative(dir, p)),
            ...(await readdir(join(dir, 'v1', 'docs'))).map((d) => `v1/docs/${d}/`),
            ...(await readdir(join(dir, 'v1', 'log'))).map((d) => `v1/log/${d}/`),
            ...(await readdir(join(dir, 'v1', 'checkpoints'))).map((d) => `v1/checkpoints/${d}/`),
          ].sort(),
        open: async () => {
          const s = await createFsStorage({ dir })
          opened.push(s)
          return s
        },
        close: async () => {
          for (const s of opened) await s.close()
          await rm(dir, { recursive: true, force: true })
        },
      }
    },
  },
  {
    kind: 's3',
    state: (escaped, sortable) => `v1/docs/${escaped}/state/${sortable}.ydoc`,
    log: (escaped, batch) => `v1/docs/${escaped}/log/${batch}.ylog`,
    checkpoint: (escaped, sortable) => `v1/docs/${escaped}/checkpoints/${sortable}.ydoc`,
    place: async () => {
      const server = await s3Server()
      const Bucket = await server.createBucket('layout')
      const admin: S3Client = server.client()
      const prefix = 'tenant/'
      const opened: DocStorage[] = []
      return {
        write: async (path, bytes) => {
          await admin.send(new PutObjectCommand({ Bucket, Key: `${prefix}${path}`, Body: bytes }))
        },
        read: async (path) => {
          const res = await admin.send(new GetObjectCommand({ Bucket, Key: `${prefix}${path}` }))
          return res.Body!.transformToByteArray()
        },
        paths: async () => {
          const res = await admin.send(new ListObjectsV2Command({ Bucket }))
          expect(res.IsTruncated).toBeFalsy()
          return (res.Contents ?? []).map((o) => o.Key!.slice(prefix.length)).sort()
        },
        open: async () => {
          const s = await createS3Storage({ client: server.client(), bucket: Bucket, prefix })
          opened.push(s)
          return s
        },
        close: async () => {
          for (const s of opened) await s.close()
        },
      }
    },
  },
]

const sortable = (ms: number, seq: number) =>
  `${String(ms).padStart(15, '0')}-${String(seq).padStart(20, '0')}`
const stored = (watermark: string, bytes: number[]): StoredDoc => ({
  watermark,
  state: Uint8Array.from(bytes),
})
const entry = (id: string): LogEntry => ({ id, update: Buffer.from(`update ${id}`) })
const plain = (entries: readonly LogEntry[]) =>
  entries.map((e) => ({ id: e.id, update: Buffer.from(e.update).toString() }))
const plainState = (s: StoredDoc | null) => s && { watermark: s.watermark, state: [...s.state] }
const checkpointState = (c: Checkpoint | null): StoredDoc | null =>
  c && { watermark: c.upTo, state: c.state }

const longName = 'L'.repeat(150)
const hashed = `~${createHash('sha256').update(longName).digest('hex')}`

describe.each(layouts)('$kind layout', (layout) => {
  it('loads data written by earlier releases and keeps writing the same layout', async () => {
    const place = await layout.place()
    try {
      // Two state versions and two overlapping log batches of `doc`, one state of `a/b`, and a
      // name too long to escape, kept under its hash.
      await place.write(
        layout.state('doc', sortable(5, 0)),
        encodeStateFile('doc', stored('5-0', [5])),
      )
      await place.write(
        layout.state('doc', sortable(9, 3)),
        encodeStateFile('doc', stored('9-3', [9, 3])),
      )
      await place.write(
        layout.log('doc', `${sortable(1, 0)}_${sortable(2, 0)}`),
        encodeLogBatch('doc', [entry('1-0'), entry('2-0')]),
      )
      await place.write(
        layout.log('doc', `${sortable(2, 0)}_${sortable(9, 3)}`),
        encodeLogBatch('doc', [entry('2-0'), entry('9-3')]),
      )
      await place.write(
        layout.state('a%2Fb', sortable(1, 0)),
        encodeStateFile('a/b', stored('1-0', [1])),
      )
      await place.write(
        layout.state(hashed, sortable(7, 0)),
        encodeStateFile(longName, stored('7-0', [7])),
      )

      const storage = await place.open()
      expect(plainState(await storage.load('doc'))).toEqual(plainState(stored('9-3', [9, 3])))
      expect(await storage.watermark('doc')).toBe('9-3')
      expect(plain(await storage.readLog('doc'))).toEqual(
        plain([entry('1-0'), entry('2-0'), entry('9-3')]),
      )
      expect(plain(await storage.readLog('doc', { after: '2-0' }))).toEqual(plain([entry('9-3')]))
      expect(plainState(await storage.load('a/b'))).toEqual(plainState(stored('1-0', [1])))
      expect(plainState(await storage.load(longName))).toEqual(plainState(stored('7-0', [7])))
      expect(await storage.list()).toEqual([longName, 'a/b', 'doc'])

      expect(await storage.compareAndSet('doc', '5-0', stored('10-0', [10]))).toBe(false)
      expect(await storage.compareAndSet('doc', '9-3', stored('10-0', [10]))).toBe(true)
      await storage.appendLog('doc', [entry('10-0')])
      const before = await place.paths()
      const docPaths = [
        layout.log('doc', `${sortable(1, 0)}_${sortable(2, 0)}`),
        layout.log('doc', `${sortable(2, 0)}_${sortable(9, 3)}`),
        layout.log('doc', `${sortable(10, 0)}_${sortable(10, 0)}`),
        layout.state('doc', sortable(9, 3)),
        layout.state('doc', sortable(10, 0)),
      ]
      for (const p of docPaths) expect(before).toContain(p)
      expect(before).not.toContain(layout.state('doc', sortable(5, 0)))

      // A second process (an earlier release's reader, as far as the layout goes) agrees.
      const other = await place.open()
      expect(plainState(await other.load('doc'))).toEqual(plainState(stored('10-0', [10])))

      // Checkpoints: state files under their upTo, found where they were put and put where found.
      await place.write(
        layout.checkpoint('doc', sortable(2, 0)),
        encodeStateFile('doc', stored('2-0', [2])),
      )
      await place.write(
        layout.checkpoint(hashed, sortable(3, 0)),
        encodeStateFile(longName, stored('3-0', [3])),
      )
      expect(await storage.listCheckpoints('doc')).toEqual(['2-0'])
      expect(plainState(checkpointState(await storage.loadCheckpoint('doc', '2-0')))).toEqual(
        plainState(stored('2-0', [2])),
      )
      expect(await storage.listCheckpoints(longName)).toEqual(['3-0'])
      await storage.putCheckpoint('doc', { upTo: '9-3', state: Uint8Array.from([9, 3]) })
      expect([...(await place.read(layout.checkpoint('doc', sortable(9, 3))))]).toEqual([
        ...encodeStateFile('doc', stored('9-3', [9, 3])),
      ])
      expect(await storage.listHistory()).toEqual([longName, 'doc'])

      // A segment is a log batch of every entry it merged, named by its first and last.
      expect(await storage.packLog('doc', '10-0')).toBe(3)
      const segment = layout.log('doc', `${sortable(1, 0)}_${sortable(10, 0)}`)
      const merged = [entry('1-0'), entry('2-0'), entry('9-3'), entry('10-0')]
      expect([...(await place.read(segment))]).toEqual([...encodeLogBatch('doc', merged)])
      expect((await place.paths()).filter((p) => p.endsWith('.ylog'))).toEqual([segment])
      expect(plain(await other.readLog('doc'))).toEqual(plain(merged))

      await storage.delete('doc')
      const after = await place.paths()
      expect(after.filter((p) => p.includes('/doc/'))).toEqual([])
      expect(after.filter((p) => p.endsWith('.lock'))).toEqual([])
      // Besides: an open fs storage's spare lock files (lock-files.ts), never read as documents.
      const files = after.filter((p) => !p.endsWith('/') && !p.startsWith('v1/locks/spare/'))
      expect(files).toEqual(
        [
          layout.state('a%2Fb', sortable(1, 0)),
          layout.state(hashed, sortable(7, 0)),
          layout.checkpoint(hashed, sortable(3, 0)),
        ].sort(),
      )
      expect(await storage.list()).toEqual([longName, 'a/b'])
      expect(await storage.listHistory()).toEqual([longName])
    } finally {
      await place.close()
    }
  })
})
