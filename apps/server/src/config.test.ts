import { describe, it, expect } from 'vitest'
import { AppError, type Env } from '@streambed/common'
import { allowedOriginsOf, parseServerConfig } from './config.js'

/** The problem lines of the AppError('CONFIG') that parsing `env` throws. */
const problemsOf = (env: Env): string[] => {
  let thrown: unknown
  try {
    parseServerConfig(env)
  } catch (err) {
    thrown = err
  }
  expect(thrown).toBeInstanceOf(AppError)
  const err = thrown as AppError
  expect(err.code).toBe('CONFIG')
  const [title, ...lines] = err.message.split('\n')
  expect(title).toBe('Invalid configuration:')
  return lines
}

const validSecret = 's'.repeat(32)

describe('parseServerConfig', () => {
  it('parses an empty environment into the documented defaults', () => {
    // toEqual: no other keys; the optional variables are absent or undefined.
    expect(parseServerConfig({})).toEqual({
      NODE_ID: expect.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/),
      PORT: 8080,
      HOST: '0.0.0.0',
      LOG_LEVEL: 'info',
      REDIS_URL: 'redis://127.0.0.1:6379',
      REDIS_PREFIX: 'streambed',
      REDIS_COMMAND_TIMEOUT_MS: 5000,
      REDIS_WAIT_REPLICAS: 0,
      REDIS_WAIT_TIMEOUT_MS: 1000,
      QUEUE_SHARDS: 8,
      STORAGE: 'fs',
      STORAGE_DIR: './data',
      WS_MAX_MESSAGE_BYTES: 16 * 1024 * 1024,
      WS_MAX_BACKPRESSURE_BYTES: 64 * 1024 * 1024,
      WS_COMPRESSION: 'shared',
      WS_COMPRESS_MIN_BYTES: 1024,
      WS_IDLE_TIMEOUT_S: 60,
      KEEPALIVE_MS: 15_000,
      MAX_IN_FLIGHT_UPDATES: 16,
      MAX_QUEUED_UPDATE_BYTES: 64 * 1024 * 1024,
      INLINE_UPDATE_MAX_BYTES: 64 * 1024,
      DOC_LINGER_MS: 5000,
      NODE_HEARTBEAT_MS: 2000,
      NODE_TIMEOUT_MS: 10_000,
      AWARENESS_TIMEOUT_MS: 30_000,
      AUTH_MODE: 'none',
      AUTH_JWT_SECRET: undefined,
      AUTH_JWT_PUBLIC_KEY: undefined,
      AUTH_JWT_ALG: 'RS256',
      AUTH_JWKS_URL: undefined,
      AUTH_JWT_ISSUER: undefined,
      AUTH_JWT_AUDIENCE: undefined,
      ALLOW_UWS_FALLBACK: false,
      REDIS_ALLOW_EVICTION: false,
      SYNC_THREADS: 1,
      SYNC_THREAD_ABOVE_BYTES: 256 * 1024,
      SYNC_THREAD_IDLE_MS: 10_000,
      AWARENESS_MAX_STATE_BYTES: 64 * 1024,
      AWARENESS_MAX_CLIENTS_PER_SOCKET: 8,
      STRUCTURE_CHECK: 'on',
      STRUCTURE_CHECK_MAX_BYTES: 64 * 1024 * 1024,
      WS_MAX_MESSAGES_PER_SECOND: 300,
      WS_MAX_BYTES_PER_SECOND: 16 * 1024 * 1024,
      MAX_CONNECTIONS: 20_000,
      MAX_CONNECTIONS_PER_DOC: 2_000,
      HTTP_MAX_REQUESTS_PER_SECOND: 100,
      DRAIN_MS: 10_000,
      METRICS_PORT: -1,
      METRICS_TOKEN: undefined,
      DEMO: 'off',
      WEBHOOK_URLS: undefined,
      WEBHOOK_SECRET: undefined,
      WEBHOOK_EVENTS: ['document.created', 'document.updated', 'document.deleted'],
      WEBHOOK_DEBOUNCE_MS: 1000,
      WEBHOOK_INCLUDE_DOCUMENT: false,
      WEBHOOK_ATTEMPTS: 12,
      WEBHOOK_BACKOFF_MS: 1000,
      WEBHOOK_TIMEOUT_MS: 10_000,
      WEBHOOK_CONCURRENCY: 8,
      WEBHOOK_KEEP_FAILED: 10_000,
      ALLOWED_ORIGINS: undefined,
      DATABASE_URL: undefined,
      DATABASE_POOL_MAX: 10,
      S3_BUCKET: undefined,
      S3_ENDPOINT: undefined,
      S3_REGION: 'us-east-1',
      S3_FORCE_PATH_STYLE: false,
      S3_ACCESS_KEY_ID: undefined,
      S3_SECRET_ACCESS_KEY: undefined,
      S3_PREFIX: '',
    })
  })

  it('needs AUTH_MODE chosen when asked to (streambed server)', () => {
    expect(() => parseServerConfig({}, { requireAuthMode: true })).toThrow(
      /AUTH_MODE: is required; expected one of none \| jwt/,
    )
    expect(parseServerConfig({ AUTH_MODE: 'none' }, { requireAuthMode: true }).AUTH_MODE).toBe(
      'none',
    )
  })

  it('serves the demo by default only when asked to (streambed all), and names a bad DEMO', () => {
    expect(parseServerConfig({}, { demoByDefault: true }).DEMO).toBe('on')
    expect(parseServerConfig({ DEMO: 'off' }, { demoByDefault: true }).DEMO).toBe('off')
    expect(parseServerConfig({ DEMO: 'on' }).DEMO).toBe('on')
    expect(problemsOf({ DEMO: 'yes' })).toEqual(['  DEMO: expected one of on | off, got "yes"'])
  })

  it('reads ALLOWED_ORIGINS as a list, * as any, and names a malformed one', () => {
    const origins = (v: string) => allowedOriginsOf(parseServerConfig({ ALLOWED_ORIGINS: v }))
    expect(origins('https://a.example, http://localhost:5173/')).toEqual([
      'https://a.example',
      'http://localhost:5173',
    ])
    expect(origins('*')).toBe('*')
    expect(allowedOriginsOf(parseServerConfig({}))).toBeNull()
    expect(() => parseServerConfig({ ALLOWED_ORIGINS: 'a.example' })).toThrow(
      /ALLOWED_ORIGINS: expected \* or a comma-separated list of origins/,
    )
  })

  it('turns hop tracing on only with a TRACE_HOPS file', () => {
    expect(parseServerConfig({}).TRACE_HOPS).toBeUndefined()
    expect(parseServerConfig({ TRACE_HOPS: '/tmp/hops.csv' }).TRACE_HOPS).toBe('/tmp/hops.csv')
  })

  it('treats empty variables as unset', () => {
    expect(parseServerConfig({ PORT: '', REDIS_URL: '', AUTH_MODE: '' })).toMatchObject({
      PORT: 8080,
      REDIS_URL: 'redis://127.0.0.1:6379',
      AUTH_MODE: 'none',
    })
  })

  it('gives two parses of an empty environment different NODE_IDs', () => {
    expect(parseServerConfig({}).NODE_ID).not.toBe(parseServerConfig({}).NODE_ID)
  })

  it('keeps an explicit NODE_ID and rejects a malformed one', () => {
    expect(parseServerConfig({ NODE_ID: 'node-1.eu_west' }).NODE_ID).toBe('node-1.eu_west')
    expect(problemsOf({ NODE_ID: 'node/1' })).toEqual([
      '  NODE_ID: expected an id of 1-64 characters from A-Z a-z 0-9 _ . -, got "node/1"',
    ])
  })

  it('parses given values', () => {
    expect(
      parseServerConfig({
        PORT: '0',
        REDIS_URL: 'rediss://user:pass@redis.internal:6380/2',
        WS_MAX_MESSAGE_BYTES: '1MiB',
        ALLOW_UWS_FALLBACK: 'yes',
        AUTH_MODE: 'jwt',
        AUTH_JWKS_URL: 'https://auth.example/jwks.json',
      }),
    ).toMatchObject({
      PORT: 0,
      REDIS_URL: 'rediss://user:pass@redis.internal:6380/2',
      WS_MAX_MESSAGE_BYTES: 1024 * 1024,
      ALLOW_UWS_FALLBACK: true,
      AUTH_MODE: 'jwt',
      AUTH_JWKS_URL: 'https://auth.example/jwks.json',
    })
  })

  it.each(['http', '-1', '65536', '80.5'])('reports a bad PORT %j', (port) => {
    expect(problemsOf({ PORT: port })).toEqual([
      `  PORT: expected an integer 0..65535, got ${JSON.stringify(port)}`,
    ])
  })

  it.each(['http://127.0.0.1:6379', '127.0.0.1:6379', 'redis'])(
    'reports a bad REDIS_URL %j',
    (url) => {
      expect(problemsOf({ REDIS_URL: url })).toEqual([
        `  REDIS_URL: expected a URL like redis://127.0.0.1:6379 or rediss://user:pass@host:6380/0, got ${JSON.stringify(url)}`,
      ])
    },
  )

  it('reports an unknown STORAGE', () => {
    expect(problemsOf({ STORAGE: 'mongo' })).toEqual([
      '  STORAGE: expected one of fs | postgres | s3, got "mongo"',
    ])
  })

  it('reports AUTH_MODE=jwt without key material', () => {
    expect(problemsOf({ AUTH_MODE: 'jwt' })).toEqual([
      '  AUTH_MODE: is "jwt" but none of AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY, AUTH_JWKS_URL is set',
    ])
  })

  it('accepts AUTH_MODE=jwt with any one kind of key material', () => {
    const pem = '-----BEGIN PUBLIC KEY-----\nMIIB...\n-----END PUBLIC KEY-----'
    expect(parseServerConfig({ AUTH_MODE: 'jwt', AUTH_JWT_SECRET: validSecret }).AUTH_MODE).toBe(
      'jwt',
    )
    expect(
      parseServerConfig({ AUTH_MODE: 'jwt', AUTH_JWT_PUBLIC_KEY: pem }).AUTH_JWT_PUBLIC_KEY,
    ).toBe(pem)
    expect(
      parseServerConfig({ AUTH_MODE: 'jwt', AUTH_JWKS_URL: 'https://a.example/jwks' })
        .AUTH_JWKS_URL,
    ).toBe('https://a.example/jwks')
  })

  it('reports a JWT secret shorter than 32 characters', () => {
    expect(problemsOf({ AUTH_MODE: 'jwt', AUTH_JWT_SECRET: 's'.repeat(31) })).toEqual([
      '  AUTH_JWT_SECRET: must be at least 32 characters',
    ])
  })

  it('reports NODE_TIMEOUT_MS smaller than twice NODE_HEARTBEAT_MS', () => {
    expect(
      parseServerConfig({ NODE_HEARTBEAT_MS: '2000', NODE_TIMEOUT_MS: '4000' }).NODE_TIMEOUT_MS,
    ).toBe(4000)
    expect(problemsOf({ NODE_HEARTBEAT_MS: '2000', NODE_TIMEOUT_MS: '3999' })).toEqual([
      '  NODE_TIMEOUT_MS: must be at least twice NODE_HEARTBEAT_MS (2000)',
    ])
    // The default timeout (10 s) is too short for a 6 s heartbeat.
    expect(problemsOf({ NODE_HEARTBEAT_MS: '6000' })).toEqual([
      '  NODE_TIMEOUT_MS: must be at least twice NODE_HEARTBEAT_MS (6000)',
    ])
  })

  it('reports several bad variables at once', () => {
    expect(problemsOf({ PORT: 'x', REDIS_URL: 'http://h', STORAGE: 'mongo' })).toEqual([
      '  REDIS_URL: expected a URL like redis://127.0.0.1:6379 or rediss://user:pass@host:6380/0, got "http://h"',
      '  STORAGE: expected one of fs | postgres | s3, got "mongo"',
      '  PORT: expected an integer 0..65535, got "x"',
    ])
  })

  it('reports several cross-variable problems at once', () => {
    expect(problemsOf({ AUTH_MODE: 'jwt', NODE_TIMEOUT_MS: '100' })).toEqual([
      '  AUTH_MODE: is "jwt" but none of AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY, AUTH_JWKS_URL is set',
      '  NODE_TIMEOUT_MS: must be at least twice NODE_HEARTBEAT_MS (2000)',
    ])
  })

  it('reports a bad variable and a cross-variable problem together', () => {
    expect(problemsOf({ PORT: 'x', AUTH_MODE: 'jwt' })).toEqual([
      '  PORT: expected an integer 0..65535, got "x"',
      '  AUTH_MODE: is "jwt" but none of AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY, AUTH_JWKS_URL is set',
    ])
  })
})

describe('storage settings', () => {
  it('names the variable a backend needs, together with other problems', () => {
    expect(problemsOf({ STORAGE: 'postgres', PORT: 'x' })).toEqual([
      '  PORT: expected an integer 0..65535, got "x"',
      '  DATABASE_URL: is required when STORAGE=postgres; expected a URL like postgres://user:pass@host:5432/db',
    ])
    expect(problemsOf({ STORAGE: 's3', S3_ACCESS_KEY_ID: 'id' })).toEqual([
      '  S3_BUCKET: is required when STORAGE=s3',
      '  S3_SECRET_ACCESS_KEY: S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together (or set neither to use the AWS credential chain)',
    ])
  })
})
