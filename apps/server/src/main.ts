import type { Registry } from 'prom-client'
import { type Logger } from '@streambed/common'
import {
  type AuthOptions,
  NodeRuntime,
  assertNativeUws,
  createAuthenticator,
  createNodeMetrics,
  startServerNode,
} from '@streambed/node'
import { openStorage } from '@streambed/storage'
import {
  connectRedisPair,
  createAwarenessStore,
  createDocStreams,
  createKeys,
} from '@streambed/streams'
import type { ServerConfig } from './config.js'

export { parseServerConfig, serverConfigSchema, type ServerConfig } from './config.js'

export interface RunningServer {
  readonly port: number
  readonly nodeId: string
  close(): Promise<void>
}

const authOptions = (c: ServerConfig): AuthOptions =>
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

/** Wires a server node from its configuration: Redis, storage, runtime, uWebSockets.js. */
export const startServer = async (
  config: ServerConfig,
  logger: Logger,
  opts: { registry?: Registry } = {},
): Promise<RunningServer> => {
  assertNativeUws(config.ALLOW_UWS_FALLBACK)
  const log = logger.child({ process: 'server', nodeId: config.NODE_ID })
  const {
    redis,
    second: subscriber,
    disconnect,
  } = await connectRedisPair({
    url: config.REDIS_URL,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    name: `streambed-node-${config.NODE_ID}`,
    allowEviction: config.REDIS_ALLOW_EVICTION,
    logger: log,
  })
  try {
    const keys = createKeys(config.REDIS_PREFIX)
    const storage = await openStorage(config, log)
    const metrics = createNodeMetrics(opts.registry)
    const runtime = new NodeRuntime({
      nodeId: config.NODE_ID,
      redis,
      subscriber,
      keys,
      streams: createDocStreams({
        redis,
        keys,
        queueShards: config.QUEUE_SHARDS,
        inlineLimitBytes: config.INLINE_UPDATE_MAX_BYTES,
      }),
      awareness: createAwarenessStore({ redis, keys, hashTtlMs: 2 * config.AWARENESS_TIMEOUT_MS }),
      storage,
      logger: log,
      metrics,
      limits: {
        maxInFlightUpdates: config.MAX_IN_FLIGHT_UPDATES,
        maxQueuedBytes: config.MAX_QUEUED_UPDATE_BYTES,
        keepaliveMs: config.KEEPALIVE_MS,
        docLingerMs: config.DOC_LINGER_MS,
        heartbeatMs: config.NODE_HEARTBEAT_MS,
        nodeTimeoutMs: config.NODE_TIMEOUT_MS,
        awarenessTimeoutMs: config.AWARENESS_TIMEOUT_MS,
        syncThreads: config.SYNC_THREADS,
        syncThreadAboveBytes: config.SYNC_THREAD_ABOVE_BYTES,
        syncThreadIdleMs: config.SYNC_THREAD_IDLE_MS,
      },
    })
    await runtime.start()
    const node = await startServerNode({
      runtime,
      authenticator: await createAuthenticator(authOptions(config)),
      metrics,
      logger: log,
      host: config.HOST,
      port: config.PORT,
      maxMessageBytes: config.WS_MAX_MESSAGE_BYTES,
      maxBackpressureBytes: config.WS_MAX_BACKPRESSURE_BYTES,
      idleTimeoutS: config.WS_IDLE_TIMEOUT_S,
      readiness: () =>
        redis.status !== 'ready'
          ? { ready: false, reason: `redis ${redis.status}` }
          : subscriber.status !== 'ready'
            ? { ready: false, reason: `redis subscriber ${subscriber.status}` }
            : { ready: true },
    })
    log.info(
      {
        port: node.port,
        url: `ws://${config.HOST === '0.0.0.0' ? 'localhost' : config.HOST}:${node.port}/<document>`,
        storage: storage.kind,
        auth: config.AUTH_MODE,
      },
      'server node listening',
    )
    return {
      port: node.port,
      nodeId: config.NODE_ID,
      close: async () => {
        log.info('server node stopping')
        await node.close()
        await storage.close()
        await redis.quit().catch(() => redis.disconnect())
        await subscriber.quit().catch(() => subscriber.disconnect())
        log.info('server node stopped')
      },
    }
  } catch (err) {
    disconnect()
    throw err
  }
}
