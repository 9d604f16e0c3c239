/** Test helper (not built): the environment for each real storage backend. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startS3Server, testDatabase } from '@streambed/testing'

export interface Backend {
  readonly env: Record<string, string>
  close(): Promise<void>
}

export const backendNames = ['fs', 'postgres', 's3'] as const
export type BackendName = (typeof backendNames)[number]

export const startBackend = async (name: BackendName): Promise<Backend> => {
  switch (name) {
    case 'fs': {
      const dir = await mkdtemp(join(tmpdir(), 'streambed-e2e-'))
      return {
        env: { STORAGE: 'fs', STORAGE_DIR: dir },
        close: () => rm(dir, { recursive: true, force: true }),
      }
    }
    case 'postgres': {
      const db = await testDatabase()
      return { env: { STORAGE: 'postgres', DATABASE_URL: db.url }, close: () => db.close() }
    }
    case 's3': {
      const s3 = await startS3Server()
      const bucket = await s3.createBucket('e2e')
      return {
        env: {
          STORAGE: 's3',
          S3_ENDPOINT: s3.endpoint,
          S3_BUCKET: bucket,
          S3_REGION: s3.region,
          S3_ACCESS_KEY_ID: s3.accessKeyId,
          S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
          S3_FORCE_PATH_STYLE: 'true',
        },
        close: () => s3.close(),
      }
    }
  }
}
