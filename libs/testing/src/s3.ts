import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CreateBucketCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3'
import S3rver from 's3rver'
import { dockerAvailable, useDocker } from './docker.js'

export interface S3Server {
  /** Which implementation answers: they differ (s3rver ignores conditional writes). */
  readonly kind: 's3rver' | 'minio'
  /** `http://127.0.0.1:<port>`: use path-style addressing (see `s3ClientOptions`). */
  readonly endpoint: string
  readonly region: string
  readonly accessKeyId: string
  readonly secretAccessKey: string
  /** Creates a bucket no other test uses and returns its name. */
  createBucket(label?: string): Promise<string>
  /** A client with `s3ClientOptions(this)`; closed by `close()`. */
  client(): S3Client
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/**
 * The client configuration for a test S3 server, for production code under test too.
 *
 * Checksums only when an operation requires them: with the SDK's default (`WHEN_SUPPORTED`) a
 * stream body is sent `aws-chunked` with a trailing CRC, which s3rver stores verbatim, framing
 * included: the object silently comes back longer and different.
 */
export const s3ClientOptions = (
  server: Pick<S3Server, 'endpoint' | 'region' | 'accessKeyId' | 'secretAccessKey'>,
): S3ClientConfig => ({
  endpoint: server.endpoint,
  region: server.region,
  credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  forcePathStyle: true,
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
})

let bucketCounter = 0
/** A valid bucket name (3-63 of `a-z0-9-`) no other test uses. */
export const uniqueBucketName = (label = 't'): string => {
  const clean = label
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+/, '')
  return `${clean.slice(0, 20) || 'b'}-${process.pid}-${Date.now().toString(36)}-${bucketCounter++}`
}

const withBuckets = (
  base: Pick<S3Server, 'kind' | 'endpoint' | 'region' | 'accessKeyId' | 'secretAccessKey'>,
  stop: () => Promise<void>,
): S3Server => {
  const clients = new Set<S3Client>()
  let admin: S3Client | undefined
  const client = () => {
    const c = new S3Client(s3ClientOptions(base))
    clients.add(c)
    return c
  }
  const close = async () => {
    // Keep-alive sockets would otherwise hold the server open.
    for (const c of clients) c.destroy()
    clients.clear()
    await stop()
  }
  return {
    ...base,
    createBucket: async (label) => {
      const name = uniqueBucketName(label)
      admin ??= client()
      await admin.send(new CreateBucketCommand({ Bucket: name }))
      return name
    },
    client,
    close,
    [Symbol.asyncDispose]: close,
  }
}

/**
 * A real S3-compatible server on loopback: s3rver (files in a temporary directory) on a free port,
 * or a testcontainers MinIO container when a Docker engine answers and STREAMBED_TEST_SERVICES is
 * not `local`. s3rver 3.7 ignores conditional writes (`If-None-Match`, `If-Match` on PUT) and
 * checks the access key id but not SigV4 signatures: see s3.int.test.ts.
 */
export const startS3Server = async (): Promise<S3Server> => {
  if (useDocker() && (await dockerAvailable())) return startMinioContainer()
  const dir = await mkdtemp(join(tmpdir(), 'streambed-s3-'))
  const server = new S3rver({ address: '127.0.0.1', port: 0, directory: dir, silent: true })
  let address
  try {
    address = await server.run()
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
  let closed = false
  return withBuckets(
    {
      kind: 's3rver',
      endpoint: `http://127.0.0.1:${address.port}`,
      region: 'us-east-1',
      accessKeyId: 'S3RVER',
      secretAccessKey: 'S3RVER',
    },
    async () => {
      if (closed) return
      closed = true
      await server.close()
      await rm(dir, { recursive: true, force: true })
    },
  )
}

const startMinioContainer = async (): Promise<S3Server> => {
  const { GenericContainer, Wait } = await import('testcontainers')
  const container = await new GenericContainer('minio/minio')
    .withCommand(['server', '/data'])
    .withEnvironment({ MINIO_ROOT_USER: 'minioadmin', MINIO_ROOT_PASSWORD: 'minioadmin' })
    .withExposedPorts(9000)
    .withWaitStrategy(Wait.forHttp('/minio/health/ready', 9000))
    .start()
  return withBuckets(
    {
      kind: 'minio',
      endpoint: `http://${container.getHost()}:${container.getMappedPort(9000)}`,
      region: 'us-east-1',
      accessKeyId: 'minioadmin',
      secretAccessKey: 'minioadmin',
    },
    async () => {
      await container.stop({ remove: true })
    },
  )
}
