import { z } from 'zod'
import {
  type Env,
  defaultProcessId,
  envBool,
  envBytes,
  envEnum,
  envInt,
  envOptional,
  envString,
  parseEnv,
} from '@streambed/common'
import { checkStorageEnv, storageEnvShape } from '@streambed/storage'
// The subpath: the package index loads BullMQ, which a node without webhooks never needs.
import { checkWebhookEnv, webhookEnvShape } from '@streambed/webhooks/config'
import { redisEnvShape } from '@streambed/streams'
import type { AuthOptions, ServerNodeOptions } from '@streambed/node'

const NODE_ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/

export interface ServerConfigOptions {
  requireAuthMode?: boolean
  demoByDefault?: boolean
}

/**
 * Every environment variable a server node reads, with its default. Documented in the README.
 * `requireAuthMode`: AUTH_MODE has no default (`streambed server` refuses to guess; `all` and
 * tests default to `none`). `demoByDefault`: DEMO defaults to `on` (`streambed all`), else `off`.
 */
export const serverConfigSchema = (opts: ServerConfigOptions = {}) =>
  z
    .object({
      ...redisEnvShape,
      ...storageEnvShape,
      ...webhookEnvShape,
      PORT: envInt({ default: 8080, min: 0, max: 65535 }),
      HOST: envString({ default: '0.0.0.0' }),
      NODE_ID: envString({
        default: () => defaultProcessId(),
        pattern: NODE_ID_PATTERN,
        form: 'an id of 1-64 characters from A-Z a-z 0-9 _ . -',
      }),
      LOG_LEVEL: envEnum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
        default: 'info',
      }),
      WS_MAX_MESSAGE_BYTES: envBytes({
        default: 16 * 1024 * 1024,
        min: 1024,
        max: 512 * 1024 * 1024,
      }),
      WS_MAX_BACKPRESSURE_BYTES: envBytes({ default: 64 * 1024 * 1024, min: 64 * 1024 }),
      WS_IDLE_TIMEOUT_S: envInt({ default: 60, min: 8, max: 960 }),
      WS_COMPRESSION: envEnum(['off', 'shared', 'dedicated'], { default: 'shared' }),
      WS_COMPRESS_MIN_BYTES: envBytes({ default: 1024, min: 0 }),
      KEEPALIVE_MS: envInt({ default: 15_000, min: 100 }),
      MAX_IN_FLIGHT_UPDATES: envInt({ default: 16, min: 1 }),
      MAX_QUEUED_UPDATE_BYTES: envBytes({ default: 64 * 1024 * 1024, min: 1024 }),
      INLINE_UPDATE_MAX_BYTES: envBytes({ default: 64 * 1024, min: 0, max: 1024 * 1024 }),
      DOC_LINGER_MS: envInt({ default: 5000, min: 0 }),
      NODE_HEARTBEAT_MS: envInt({ default: 2000, min: 50 }),
      NODE_TIMEOUT_MS: envInt({ default: 10_000, min: 100 }),
      AWARENESS_TIMEOUT_MS: envInt({ default: 30_000, min: 1000 }),
      AUTH_MODE: envEnum(['none', 'jwt'], opts.requireAuthMode ? {} : { default: 'none' }),
      AUTH_JWT_SECRET: envOptional(),
      AUTH_JWT_PUBLIC_KEY: envOptional({
        pattern: /-----BEGIN PUBLIC KEY-----/,
        form: 'a PEM "BEGIN PUBLIC KEY" block',
      }),
      AUTH_JWT_ALG: envString({
        default: 'RS256',
        pattern: /^(RS|PS|ES)(256|384|512)$|^EdDSA$/,
        form: 'RS256, PS256, ES256, EdDSA (or the 384/512 variants)',
      }),
      AUTH_JWKS_URL: envOptional({ pattern: /^https?:\/\//, form: 'an http(s) URL' }),
      AUTH_JWT_ISSUER: envOptional(),
      AUTH_JWT_AUDIENCE: envOptional(),
      ALLOW_UWS_FALLBACK: envBool({ default: false }),
      SYNC_THREADS: envInt({ default: 1, min: 0, max: 64 }),
      SYNC_THREAD_ABOVE_BYTES: envBytes({ default: 256 * 1024, min: 0 }),
      SYNC_THREAD_IDLE_MS: envInt({ default: 10_000, min: 0 }),
      AWARENESS_MAX_STATE_BYTES: envBytes({ default: 64 * 1024, min: 256 }),
      AWARENESS_MAX_CLIENTS_PER_SOCKET: envInt({ default: 8, min: 1, max: 1024 }),
      STRUCTURE_CHECK: envEnum(['on', 'off'], { default: 'on' }),
      STRUCTURE_CHECK_MAX_BYTES: envBytes({ default: 64 * 1024 * 1024, min: 1024 * 1024 }),
      WS_MAX_MESSAGES_PER_SECOND: envInt({ default: 300, min: 1 }),
      WS_MAX_BYTES_PER_SECOND: envBytes({ default: 16 * 1024 * 1024, min: 1024 }),
      MAX_CONNECTIONS: envInt({ default: 20_000, min: 1 }),
      MAX_CONNECTIONS_PER_DOC: envInt({ default: 2_000, min: 1 }),
      HTTP_MAX_REQUESTS_PER_SECOND: envInt({ default: 100, min: 1 }),
      DRAIN_MS: envInt({ default: 10_000, min: 0 }),
      METRICS_PORT: envInt({ default: -1, min: -1, max: 65535 }),
      METRICS_TOKEN: envOptional({
        pattern: /^\S{16,}$/,
        form: 'a token of at least 16 characters',
      }),
      DEMO: envEnum(['on', 'off'], { default: opts.demoByDefault ? 'on' : 'off' }),
      TRACE_HOPS: envOptional(),
      ALLOWED_ORIGINS: envOptional({
        pattern: /^(\*|(https?:\/\/[^\s/,]+\/?)(\s*,\s*https?:\/\/[^\s/,]+\/?)*)$/,
        form: '* or a comma-separated list of origins like https://app.example.com,http://localhost:5173',
      }),
    })
    // Runs even when single variables failed (`when`), so every problem is reported at once; a
    // failed variable then holds a non-string/number marker, hence the type guards.
    .superRefine(
      (c, ctx) => {
        checkStorageEnv(c, ctx)
        checkWebhookEnv(c, ctx)
        if (
          c.AUTH_MODE === 'jwt' &&
          !c.AUTH_JWT_SECRET &&
          !c.AUTH_JWT_PUBLIC_KEY &&
          !c.AUTH_JWKS_URL
        ) {
          ctx.addIssue({
            code: 'custom',
            path: ['AUTH_MODE'],
            message:
              'is "jwt" but none of AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY, AUTH_JWKS_URL is set',
          })
        }
        if (typeof c.AUTH_JWT_SECRET === 'string' && c.AUTH_JWT_SECRET.length < 32) {
          ctx.addIssue({
            code: 'custom',
            path: ['AUTH_JWT_SECRET'],
            message: 'must be at least 32 characters',
          })
        }
        if (
          typeof c.NODE_TIMEOUT_MS === 'number' &&
          typeof c.NODE_HEARTBEAT_MS === 'number' &&
          c.NODE_TIMEOUT_MS < 2 * c.NODE_HEARTBEAT_MS
        ) {
          ctx.addIssue({
            code: 'custom',
            path: ['NODE_TIMEOUT_MS'],
            message: `must be at least twice NODE_HEARTBEAT_MS (${c.NODE_HEARTBEAT_MS})`,
          })
        }
      },
      { when: () => true },
    )

export type ServerConfig = z.output<ReturnType<typeof serverConfigSchema>>

/** Pure: parses `env`, throwing one AppError('CONFIG') that lists every problem. */
export const parseServerConfig = (env: Env, opts: ServerConfigOptions = {}): ServerConfig =>
  parseEnv(serverConfigSchema(opts), env)

/** ALLOWED_ORIGINS: a list of origins, '*' (any, with CORS headers), or null when unset. */
export const allowedOriginsOf = (c: ServerConfig): string[] | '*' | null =>
  c.ALLOWED_ORIGINS === undefined
    ? null
    : c.ALLOWED_ORIGINS === '*'
      ? '*'
      : c.ALLOWED_ORIGINS.split(',').map((o) => o.trim().replace(/\/$/, ''))

/** The authentication a configuration asks for. */
export const authOptionsOf = (c: ServerConfig): AuthOptions =>
  c.AUTH_MODE === 'none'
    ? { mode: 'none' }
    : {
        mode: 'jwt',
        ...(c.AUTH_JWT_SECRET ? { secret: c.AUTH_JWT_SECRET } : {}),
        ...(c.AUTH_JWT_PUBLIC_KEY
          ? { publicKey: c.AUTH_JWT_PUBLIC_KEY, publicKeyAlg: c.AUTH_JWT_ALG }
          : {}),
        ...(c.AUTH_JWKS_URL ? { jwksUrl: c.AUTH_JWKS_URL } : {}),
        ...(c.AUTH_JWT_ISSUER ? { issuer: c.AUTH_JWT_ISSUER } : {}),
        ...(c.AUTH_JWT_AUDIENCE ? { audience: c.AUTH_JWT_AUDIENCE } : {}),
      }

/** The settings of a server node that come from its configuration (pure). */
export const nodeSettingsOf = (
  c: ServerConfig,
): Omit<ServerNodeOptions, 'redis' | 'subscriber' | 'storage' | 'logger' | 'registry'> => ({
  nodeId: c.NODE_ID,
  redisPrefix: c.REDIS_PREFIX,
  queueShards: c.QUEUE_SHARDS,
  inlineUpdateMaxBytes: c.INLINE_UPDATE_MAX_BYTES,
  waitReplicas: c.REDIS_WAIT_REPLICAS,
  waitTimeoutMs: c.REDIS_WAIT_TIMEOUT_MS,
  auth: authOptionsOf(c),
  host: c.HOST,
  port: c.PORT,
  maxMessageBytes: c.WS_MAX_MESSAGE_BYTES,
  maxBackpressureBytes: c.WS_MAX_BACKPRESSURE_BYTES,
  idleTimeoutS: c.WS_IDLE_TIMEOUT_S,
  compression: c.WS_COMPRESSION,
  compressMinBytes: c.WS_COMPRESS_MIN_BYTES,
  maxMessagesPerSecond: c.WS_MAX_MESSAGES_PER_SECOND,
  maxBytesPerSecond: c.WS_MAX_BYTES_PER_SECOND,
  maxConnections: c.MAX_CONNECTIONS,
  maxConnectionsPerDoc: c.MAX_CONNECTIONS_PER_DOC,
  httpMaxRequestsPerSecond: c.HTTP_MAX_REQUESTS_PER_SECOND,
  drainMs: c.DRAIN_MS,
  metricsPort: c.METRICS_PORT < 0 ? null : c.METRICS_PORT,
  metricsToken: c.METRICS_TOKEN ?? null,
  allowedOrigins: allowedOriginsOf(c),
  traceHopsFile: c.TRACE_HOPS ?? null,
  limits: {
    awarenessMaxStateBytes: c.AWARENESS_MAX_STATE_BYTES,
    awarenessMaxClientsPerConnection: c.AWARENESS_MAX_CLIENTS_PER_SOCKET,
    maxInFlightUpdates: c.MAX_IN_FLIGHT_UPDATES,
    maxQueuedBytes: c.MAX_QUEUED_UPDATE_BYTES,
    keepaliveMs: c.KEEPALIVE_MS,
    docLingerMs: c.DOC_LINGER_MS,
    heartbeatMs: c.NODE_HEARTBEAT_MS,
    nodeTimeoutMs: c.NODE_TIMEOUT_MS,
    awarenessTimeoutMs: c.AWARENESS_TIMEOUT_MS,
    syncThreads: c.SYNC_THREADS,
    syncThreadAboveBytes: c.SYNC_THREAD_ABOVE_BYTES,
    syncThreadIdleMs: c.SYNC_THREAD_IDLE_MS,
    structureCheck: c.STRUCTURE_CHECK === 'on',
    structureCheckMaxBytes: c.STRUCTURE_CHECK_MAX_BYTES,
  },
})
