import type { us_listen_socket } from 'uWebSockets.js'
import type { Registry } from 'prom-client'
import { AppError, describeError, type Logger } from '@streambed/common'
import { parseDocName } from '@streambed/protocol'
import type { DocStorage } from '@streambed/storage'
import { createAwarenessStore, createDocStreams, createKeys, type Redis } from '@streambed/streams'
import { type AuthOptions, createAuthenticator } from './auth.js'
import { mountHttpApi } from './http-api.js'
import { createNodeMetrics } from './metrics.js'
import { NodeRuntime, type RuntimeLimits } from './runtime.js'
import { uWS } from './uws.js'
import { wsBehavior } from './ws-behavior.js'

export interface ServerNodeOptions {
  nodeId: string
  /** Command connection and a dedicated one for sharded pub/sub (see connectRedisPair). */
  redis: Redis
  subscriber: Redis
  redisPrefix: string
  queueShards: number
  /** Doorbells carry updates up to this size inline. */
  inlineUpdateMaxBytes: number
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
  limits?: Partial<RuntimeLimits>
}

export interface ServerNode {
  readonly port: number
  /** Stops listening, closes every socket (1001) and waits for pending appends. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/** A server node: runtime + WebSocket and HTTP on one uWebSockets.js port. */
export const startServerNode = async (opts: ServerNodeOptions): Promise<ServerNode> => {
  const { redis, subscriber, logger } = opts
  const keys = createKeys(opts.redisPrefix)
  const metrics = createNodeMetrics(opts.registry)
  const streams = createDocStreams({
    redis,
    keys,
    queueShards: opts.queueShards,
    inlineLimitBytes: opts.inlineUpdateMaxBytes,
  })
  const awarenessTimeoutMs = opts.limits?.awarenessTimeoutMs ?? 30_000
  const awareness = createAwarenessStore({ redis, keys, hashTtlMs: 2 * awarenessTimeoutMs })
  const { storage } = opts
  const runtime = new NodeRuntime({ ...opts, keys, streams, awareness, storage, metrics })
  const authenticator = await createAuthenticator(opts.auth)
  await runtime.start()
  let draining = false
  const notReady = () =>
    redis.status !== 'ready'
      ? `redis ${redis.status}`
      : subscriber.status !== 'ready'
        ? `redis subscriber ${subscriber.status}`
        : null
  const shared = {
    runtime,
    authorize: async (path: string, token: string | undefined) => {
      const doc = parseDocName(path)
      return { doc, grant: await authenticator.authorize(token, doc) }
    },
    onHttpError: (err: unknown, status: number) => {
      metrics.errors.inc({ code: describeError(err).code })
      if (status >= 500) logger.warn({ err }, 'HTTP request failed')
    },
  }
  const app = uWS.App()
  const refusal = () => {
    const reason = draining ? 'node shutting down' : notReady()
    if (reason === null) return null
    return new AppError(draining ? 'SHUTTING_DOWN' : 'REDIS_UNAVAILABLE', reason)
  }
  app.ws('/*', wsBehavior({ ...shared, ...opts, metrics, refusal }))
  mountHttpApi(app, {
    ...shared,
    maxBodyBytes: opts.maxMessageBytes,
    ops: {
      readiness: () => {
        const reason = draining ? 'shutting down' : notReady()
        const details = { connections: runtime.connectionCount }
        return reason === null ? { ready: true, details } : { ready: false, reason, details }
      },
      metrics: async () => ({
        contentType: metrics.registry.contentType,
        text: await metrics.registry.metrics(),
      }),
    },
  })
  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen(opts.host, opts.port, (ls) => {
      if (ls) return resolve(ls)
      const where = `${opts.host}:${opts.port}`
      reject(
        new AppError(
          'CONFIG',
          `cannot listen on ${where} (in use or not permitted); set PORT/HOST`,
        ),
      )
    })
  })
  let closing: Promise<void> | undefined
  const close = () =>
    (closing ??= (async () => {
      draining = true
      uWS.us_listen_socket_close(listenSocket)
      await runtime.close()
    })())
  return { port: uWS.us_socket_local_port(listenSocket), close, [Symbol.asyncDispose]: close }
}
