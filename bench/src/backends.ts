/**
 * Storage backends for the benchmarks, each a real server on this machine: fs (a temporary
 * directory), Postgres (a schema of its own in the local `test` database, or DATABASE_URL) and S3
 * (s3rver on loopback). A backend gives the settings for spawned workers and nodes, and opens the
 * same storage in the bench process (to poll watermarks and read states back).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '@streambed/common'
import { type DocStorage, type StorageEnv, openStorage } from '@streambed/storage'
import { startS3Server, testDatabase } from '@streambed/testing'

export type BackendName = 'fs' | 'postgres' | 's3'

export interface Backend {
  readonly name: BackendName
  /** STORAGE and its settings, for `startCluster({ env })`. */
  readonly env: Record<string, string>
  /** The same storage, opened in this process. */
  open(): Promise<DocStorage>
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

const baseEnv: StorageEnv = {
  STORAGE: 'fs',
  STORAGE_DIR: './data',
  DATABASE_URL: undefined,
  DATABASE_POOL_MAX: 10,
  S3_BUCKET: undefined,
  S3_ENDPOINT: undefined,
  S3_REGION: 'us-east-1',
  S3_FORCE_PATH_STYLE: true,
  S3_ACCESS_KEY_ID: undefined,
  S3_SECRET_ACCESS_KEY: undefined,
  S3_PREFIX: '',
}

const backend = (
  name: BackendName,
  env: Record<string, string>,
  release: () => Promise<void>,
): Backend => {
  const typed: StorageEnv = { ...baseEnv, ...env, STORAGE: name, S3_FORCE_PATH_STYLE: true }
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await release()
  }
  return {
    name,
    env,
    open: () => openStorage(typed, silentLogger()),
    close,
    [Symbol.asyncDispose]: close,
  }
}

/** A fresh, empty store of the named kind. */
export const startBackend = async (name: BackendName): Promise<Backend> => {
  switch (name) {
    case 'fs': {
      const dir = await mkdtemp(join(tmpdir(), 'streambed-bench-fs-'))
      return backend('fs', { STORAGE: 'fs', STORAGE_DIR: dir }, () =>
        rm(dir, { recursive: true, force: true }),
      )
    }
    case 'postgres': {
      const db = await testDatabase(undefined, 'bench')
      return backend('postgres', { STORAGE: 'postgres', DATABASE_URL: db.url }, () => db.close())
    }
    case 's3': {
      const server = await startS3Server()
      const bucket = await server.createBucket('bench')
      return backend(
        's3',
        {
          STORAGE: 's3',
          S3_BUCKET: bucket,
          S3_ENDPOINT: server.endpoint,
          S3_REGION: server.region,
          S3_FORCE_PATH_STYLE: 'true',
          S3_ACCESS_KEY_ID: server.accessKeyId,
          S3_SECRET_ACCESS_KEY: server.secretAccessKey,
        },
        () => server.close(),
      )
    }
  }
}

/** How a table names a backend: s3 says which server answered. */
export const backendLabel = (name: BackendName): string =>
  name === 's3' ? 'S3 (s3rver)' : name === 'postgres' ? 'Postgres' : 'fs'
