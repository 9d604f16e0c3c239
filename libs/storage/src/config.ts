import { type z } from 'zod'
import {
  AppError,
  type Logger,
  envBool,
  envEnum,
  envInt,
  envOptional,
  envString,
} from '@streambed/common'
import { createFsStorage } from './fs-storage.js'
import { createPostgresStorage } from './postgres-storage.js'
import { createS3Storage } from './s3-storage.js'
import type { DocStorage } from './storage.js'

/** Storage settings shared by server nodes (they read) and workers (they write). */
export const storageEnvShape = {
  STORAGE: envEnum(['fs', 'postgres', 's3'], { default: 'fs' }),
  STORAGE_DIR: envString({ default: './data' }),
  DATABASE_URL: envOptional({
    pattern: /^postgres(ql)?:\/\//,
    form: 'a URL like postgres://user:pass@host:5432/db',
  }),
  DATABASE_POOL_MAX: envInt({ default: 10, min: 1, max: 1000 }),
  S3_BUCKET: envOptional({
    pattern: /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/,
    form: 'an S3 bucket name (3-63 of a-z 0-9 . -)',
  }),
  S3_ENDPOINT: envOptional({
    pattern: /^https?:\/\//,
    form: 'an http(s) URL like http://127.0.0.1:9000',
  }),
  S3_REGION: envString({ default: 'us-east-1' }),
  S3_FORCE_PATH_STYLE: envBool({ default: false }),
  S3_ACCESS_KEY_ID: envOptional(),
  S3_SECRET_ACCESS_KEY: envOptional(),
  S3_PREFIX: envString({
    default: '',
    pattern: /^$|^[A-Za-z0-9!_.*'()/-]*\/$/,
    form: 'empty or a key prefix ending in "/"',
  }),
}

export type StorageEnv = {
  [K in keyof typeof storageEnvShape]: z.output<(typeof storageEnvShape)[K]>
}

/** Cross-variable checks; call from the app schema's superRefine. */
export const checkStorageEnv = (
  c: Partial<Record<keyof StorageEnv, unknown>>,
  ctx: z.RefinementCtx,
): void => {
  if (c.STORAGE === 'postgres' && !c.DATABASE_URL) {
    ctx.addIssue({
      code: 'custom',
      path: ['DATABASE_URL'],
      message:
        'is required when STORAGE=postgres; expected a URL like postgres://user:pass@host:5432/db',
    })
  }
  if (c.STORAGE === 's3' && !c.S3_BUCKET) {
    ctx.addIssue({ code: 'custom', path: ['S3_BUCKET'], message: 'is required when STORAGE=s3' })
  }
  if (!!c.S3_ACCESS_KEY_ID !== !!c.S3_SECRET_ACCESS_KEY) {
    ctx.addIssue({
      code: 'custom',
      path: [c.S3_ACCESS_KEY_ID ? 'S3_SECRET_ACCESS_KEY' : 'S3_ACCESS_KEY_ID'],
      message:
        'S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together (or set neither to use the AWS credential chain)',
    })
  }
}

/**
 * The S3 client options Streambed needs: checksums only when required (the SDK's default
 * checksums corrupt streamed uploads to some S3-compatible servers).
 */
export const s3ClientConfig = (c: StorageEnv) => ({
  region: c.S3_REGION,
  forcePathStyle: c.S3_FORCE_PATH_STYLE,
  requestChecksumCalculation: 'WHEN_REQUIRED' as const,
  responseChecksumValidation: 'WHEN_REQUIRED' as const,
  ...(c.S3_ENDPOINT ? { endpoint: c.S3_ENDPOINT } : {}),
  ...(c.S3_ACCESS_KEY_ID && c.S3_SECRET_ACCESS_KEY
    ? { credentials: { accessKeyId: c.S3_ACCESS_KEY_ID, secretAccessKey: c.S3_SECRET_ACCESS_KEY } }
    : {}),
})

/** Opens the configured backend (composition roots only; runtimes get the DocStorage). */
export const openStorage = async (c: StorageEnv, logger: Logger): Promise<DocStorage> => {
  switch (c.STORAGE) {
    case 'fs':
      return createFsStorage({ dir: c.STORAGE_DIR, logger })
    case 'postgres':
      if (!c.DATABASE_URL)
        throw new AppError('CONFIG', 'DATABASE_URL is required when STORAGE=postgres')
      return createPostgresStorage({ url: c.DATABASE_URL, poolMax: c.DATABASE_POOL_MAX, logger })
    case 's3': {
      if (!c.S3_BUCKET) throw new AppError('CONFIG', 'S3_BUCKET is required when STORAGE=s3')
      // The SDK loads only for STORAGE=s3 (createS3Storage loads its commands the same way).
      const { S3Client } = await import('@aws-sdk/client-s3')
      return createS3Storage({
        client: new S3Client(s3ClientConfig(c)),
        bucket: c.S3_BUCKET,
        prefix: c.S3_PREFIX,
        logger,
      })
    }
  }
}
