import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js'
import type { Registry } from 'prom-client'
import { AppError, describeError, type Logger, type OpsEndpoints } from '@streambed/common'
import type { DocStorage } from '@streambed/storage'
import {
  createAwarenessStore,
  createDocStreams,
  createKeys,
  createRevocations,
  type Keys,
  type Redis,
} from '@streambed/streams'
import { createAdmission } from './admission.js'
import { type AuthOptions, createAuthenticator } from './auth.js'
import { mountHttpApi, mountOpsRoutes, type OpsAccess } from './http-api.js'
import { HopTrace } from './hop-trace.js'
import { createNodeMetrics } from './metrics.js'
import { KeyedBuckets } from './rate-limit.js'
import { RevocationGuard } from './revocation-guard.js'
import { NodeRuntime, type RuntimeLimits } from './runtime.js'
import { loadStaticSite, mountStaticSite, type StaticSiteOptions } from './static-files.js'
import { uWS } from './uws.js'
import { type WsCompression, wsBehavior } from './ws-behavior.js'

export interface ServerNodeOptions {
  nodeId: string
  /** Command connection and a dedicated one for pub/sub (see connectRedisPair). */
  redis: Redis
  subscriber: Redis
  redisPrefix: string
  queueShards: number
  /** Doorbells carry updates up to this size inline. */
  inlineUpdateMaxBytes: number
  /** Replicas that confirm an append (WAIT) before its doorbell rings; 0: none. */
  waitReplicas?: number
  waitTimeoutMs?: number
  storage: DocStorage
  auth: AuthOptions
  logger: Logger
  /** Metrics go here (default: a registry of the node's own). */
  registry?: Registry
  host: string
  /** 0 picks a free port (see `ServerNode.port`). */
  port: number
  /** Largest accepted WebSocket message or HTTP body. */
  maxMessageBytes: number
  /** Send buffer per socket above which the socket is closed (4508). */
  maxBackpressureBytes: number
  /** Seconds without traffic before uWS pings, then closes, a socket. */
  idleTimeoutS: number
  /** permessage-deflate for sent messages (WS_COMPRESSION); default off. */
  compression?: WsCompression
  /** With compression, messages from this size up are compressed; default 1024. */
  compressMinBytes?: number
  /** Per socket, in bursts of twice these; past them the socket is closed (4529). */
  maxMessagesPerSecond: number
  maxBytesPerSecond: number
  /** Sockets the node holds, and of one document; more are refused (4503). */
  maxConnections: number
  maxConnectionsPerDoc: number
  /** Document API requests per second per client address; more get 429. */
  httpMaxRequestsPerSecond: number
  /** Serve /metrics and /readyz details on this port only (0: a free one); null: on `port`. */
  metricsPort: number | null
  /** Require `Authorization: Bearer <token>` for /metrics and /readyz details; null: open. */
  metricsToken: string | null
  /** On close, sockets are closed spread over this long (default 0: at once). */
  drainMs?: number
  /** Browser origins that may connect: a list, '*' (any, with CORS), null (any, no CORS). */
  allowedOrigins: readonly string[] | '*' | null
  /** A built web page (the demo) served at `/` from memory; absent or null: none. */
  site?: StaticSiteOptions | null
  limits?: Partial<RuntimeLimits>
  /** See RuntimeOptions.announceDelete. */
  announceDelete?: (doc: string) => Promise<void>
  /** Append hop timestamps of every update to this file (TRACE_HOPS, see HopTrace); null: off. */
  traceHopsFile?: string | null
}

export interface ServerNode {
  readonly port: number
  /** The METRICS_PORT listener's port, when there is one. */
  readonly metricsPort: number | null
  /**
   * Drains: /readyz turns 503, the port stops accepting, sockets close with 1001 spread over
   * `drainMs` (default the node's DRAIN_MS), then pending appends are awaited.
   */
  close(drainMs?: number): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/** Who sees /metrics and /readyz details on the main port (see ServerNodeOptions). */
const mainOpsAccess = (opts: ServerNodeOptions): OpsAccess =>
  opts.metricsPort !== null
    ? { kind: 'elsewhere' }
    : opts.metricsToken !== null
      ? { kind: 'token', token: opts.metricsToken }
      : { kind: 'open' }

/** The METRICS_PORT listener: the operations endpoints alone. */
const listenForOps = (opts: ServerNodeOptions, ops: OpsEndpoints, onHttpError: OnHttpError) => {
  if (opts.metricsPort === null) return Promise.resolve(null)
  const app = uWS.App()
  const access: OpsAccess =
    opts.metricsToken !== null ? { kind: 'token', token: opts.metricsToken } : { kind: 'open' }
  mountOpsRoutes(app, { ops, access, onHttpError })
  return listen(app, opts.host, opts.metricsPort)
}

type OnHttpError = (err: unknown, status: number) => void

const listen = (app: TemplatedApp, host: string, port: number) =>
  new Promise<us_listen_socket>((resolve, reject) =>
    app.listen(host, port, (ls) =>
      ls
        ? resolve(ls)
        : reject(
            new AppError('CONFIG', `cannot listen on ${host}:${port} (in use?); set PORT/HOST`),
          ),
    ),
  )

/** Who may open sockets and call the API; in jwt mode, revocations are watched (started). */
const admissionFor = async (opts: ServerNodeOptions, runtime: NodeRuntime, keys: Keys) => {
  const revocations =
    opts.auth.mode === 'jwt'
      ? new RevocationGuard({
          ...opts,
          keys,
          revocations: createRevocations({ redis: opts.redis, keys }),
          connections: () => runtime.connections(),
        })
      : null
  await revocations?.start()
  const admission = createAdmission({
    ...opts,
    authenticator: await createAuthenticator(opts.auth),
    revocations,
    connections: () => runtime.connectionCount,
    connectionsOf: (doc) => runtime.connectionsOf(doc),
  })
  return { admission, revocations }
}

/** A server node: runtime + WebSocket and HTTP on one uWebSockets.js port. */
export const startServerNode = async (opts: ServerNodeOptions): Promise<ServerNode> => {
  const { redis, subscriber, logger } = opts
  // Read before anything starts: a failure here leaves nothing running.
  const site = opts.site ? await loadStaticSite(opts.site) : null
  if (site?.problem) logger.warn({ dir: site.dir }, site.problem)
  const keys = createKeys(opts.redisPrefix)
  const metrics = createNodeMetrics(opts.registry)
  // With WAIT, appends get a connection of their own (see DocStreamsOptions.writer).
  const writer = opts.waitReplicas ? redis.duplicate() : null
  writer?.on('error', (err: Error) =>
    logger.warn({ err: err.message, connection: 'writer' }, 'redis connection error'),
  )
  const streams = createDocStreams({
    ...opts,
    keys,
    inlineLimitBytes: opts.inlineUpdateMaxBytes,
    ...(writer ? { writer } : {}),
  })
  const staleMs = opts.limits?.awarenessTimeoutMs ?? 30_000
  const awareness = createAwarenessStore({ redis, keys, hashTtlMs: 2 * staleMs, staleMs })
  const trace = opts.traceHopsFile ? new HopTrace(opts.traceHopsFile, opts.nodeId, logger) : null
  const runtime = new NodeRuntime({ ...opts, keys, streams, awareness, metrics, trace })
  await runtime.start()
  const { admission, revocations } = await admissionFor(opts, runtime, keys)
  let draining = false
  const notReady = () =>
    draining
      ? 'shutting down'
      : [redis, subscriber].find((r) => r.status !== 'ready')?.status.replace(/^/, 'redis ')
  const onHttpError: OnHttpError = (err, status) => {
    metrics.errors.inc({ code: describeError(err).code })
    if (status >= 500) logger.warn({ err }, 'HTTP request failed')
  }
  const ops: OpsEndpoints = {
    readiness: () => {
      const reason = notReady()
      const details = { connections: runtime.connectionCount }
      return reason === undefined ? { ready: true, details } : { ready: false, reason, details }
    },
    metrics: async () => ({
      contentType: metrics.registry.contentType,
      text: await metrics.registry.metrics(),
    }),
  }
  const refusal = () => {
    const reason = notReady()
    if (reason === undefined) return null
    return new AppError(draining ? 'SHUTTING_DOWN' : 'REDIS_UNAVAILABLE', reason)
  }
  const buckets = new KeyedBuckets(opts.httpMaxRequestsPerSecond, opts.httpMaxRequestsPerSecond)
  const access = mainOpsAccess(opts)
  const app = uWS.App()
  app.ws('/*', wsBehavior({ ...opts, runtime, metrics, admission, refusal, onHttpError }))
  if (site) mountStaticSite(app, site, onHttpError)
  mountHttpApi(app, {
    ...opts,
    runtime,
    admission,
    metrics,
    buckets,
    ops,
    access,
    onHttpError,
    maxBodyBytes: opts.maxMessageBytes,
  })
  const listenSocket = await listen(app, opts.host, opts.port)
  const metricsSocket = await listenForOps(opts, ops, onHttpError)
  let closing: Promise<void> | undefined
  const close = (drainMs = opts.drainMs ?? 0) =>
    (closing ??= (async () => {
      draining = true
      uWS.us_listen_socket_close(listenSocket)
      buckets.close()
      await revocations?.close()
      await runtime.close(drainMs)
      writer?.disconnect()
      // Last: /readyz keeps answering 503 while the sockets drain.
      if (metricsSocket) uWS.us_listen_socket_close(metricsSocket)
    })())
  return {
    port: uWS.us_socket_local_port(listenSocket),
    metricsPort: metricsSocket ? uWS.us_socket_local_port(metricsSocket) : null,
    close,
    [Symbol.asyncDispose]: close,
  }
}
