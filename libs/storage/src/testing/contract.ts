import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { S3Client } from '@aws-sdk/client-s3'
import { afterAll, afterEach, beforeEach, expect } from 'vitest'
import { AppError } from '@streambed/common'
import { s3ClientOptions, startS3Server, testDatabase, type S3Server } from '@streambed/testing'
import {
  createFsStorage,
  createPostgresStorage,
  createS3Storage,
  type DocStorage,
  type LogEntry,
  type StoredDoc,
} from '../index.js'

/**
 * What the storage contract suites share: every backend on real services (a temporary directory,
 * a schema of its own in the local Postgres, a bucket of its own on an S3 server) and assertions
 * that compare bytes without printing megabytes.
 */

export interface Space {
  readonly storage: DocStorage
  /** Another storage over the same data, as a second process would open it. */
  another(): Promise<DocStorage>
  close(): Promise<void>
}

export interface Backend {
  readonly kind: 'fs' | 'postgres' | 's3'
  /** Fresh, empty storage no other test sees. */
  open(): Promise<Space>
}

export const s3Client = (server: S3Server, extra: { maxAttempts?: number } = {}) =>
  new S3Client({ ...s3ClientOptions(server), ...extra })

const spaceOf = async (
  openOne: () => Promise<DocStorage>,
  cleanup: () => Promise<void>,
): Promise<Space> => {
  const opened: DocStorage[] = []
  const another = async () => {
    const s = await openOne()
    opened.push(s)
    return s
  }
  const storage = await another()
  return {
    storage,
    another,
    close: async () => {
      for (const s of opened) await s.close()
      await cleanup()
    },
  }
}

export const S3_PREFIX = 'tenant/'

/**
 * The backends, and the S3 server they share (started on first use). Call at the top level of a
 * test file: the server stops after the file's tests.
 */
export const contractBackends = (): { backends: Backend[]; s3Server: () => Promise<S3Server> } => {
  let s3ServerStarted: Promise<S3Server> | undefined
  const s3Server = (): Promise<S3Server> => (s3ServerStarted ??= startS3Server())
  afterAll(async () => {
    if (s3ServerStarted) await (await s3ServerStarted).close()
  })
  const backends: Backend[] = [
    {
      kind: 'fs',
      open: async () => {
        const dir = await mkdtemp(join(tmpdir(), 'streambed-contract-'))
        return spaceOf(
          () => createFsStorage({ dir }),
          () => rm(dir, { recursive: true, force: true }),
        )
      },
    },
    {
      kind: 'postgres',
      open: async () => {
        const db = await testDatabase(undefined, 'contract')
        return spaceOf(
          () => createPostgresStorage({ url: db.url, poolMax: 4 }),
          () => db.close(),
        )
      },
    },
    {
      kind: 's3',
      open: async () => {
        const server = await s3Server()
        const bucket = await server.createBucket('contract')
        return spaceOf(
          () => createS3Storage({ client: s3Client(server), bucket, prefix: S3_PREFIX }),
          async () => {},
        )
      },
    },
  ]
  return { backends, s3Server }
}

/** Opens a fresh space of `backend` before each test of the enclosing suite, closes it after. */
export const spaceForEachTest = (backend: Backend, use: (space: Space) => void): void => {
  let space: Space | undefined
  beforeEach(async () => {
    space = await backend.open()
    use(space)
  })
  afterEach(async () => {
    await space?.close()
  })
}

export const stored = (watermark: string, state: Uint8Array | number[]): StoredDoc => ({
  watermark,
  state: Uint8Array.from(state),
})

/** Exact byte equality, without printing megabytes on failure. */
export const expectBytes = (actual: Uint8Array | undefined, expected: Uint8Array): void => {
  expect(actual).toBeDefined()
  expect(actual!.length).toBe(expected.length)
  expect(Buffer.from(actual!).equals(Buffer.from(expected))).toBe(true)
}

export const expectStored = (actual: StoredDoc | null, expected: StoredDoc): void => {
  expect(actual?.watermark).toBe(expected.watermark)
  expectBytes(actual?.state, expected.state)
}

/** An entry whose update bytes name its id, so a mix-up shows. */
export const entry = (id: string): LogEntry => ({ id, update: Buffer.from(`update ${id}`) })

export const expectLog = (
  actual: readonly LogEntry[],
  expected: readonly LogEntry[],
  message?: string,
): void => {
  expect(
    actual.map((e) => e.id),
    message,
  ).toEqual(expected.map((e) => e.id))
  actual.forEach((e, i) => expectBytes(e.update, expected[i]!.update))
}

export const expectStorageUnavailable = async (promise: Promise<unknown>): Promise<void> => {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(AppError)
  expect((err as AppError).code).toBe('STORAGE_UNAVAILABLE')
}
