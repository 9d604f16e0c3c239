import type { Registry } from 'prom-client'
import { type Logger } from '@streambed/common'
import { assertNativeUws, startServerNode } from '@streambed/node'
import { openStorage } from '@streambed/storage'
import { connectRedisPair } from '@streambed/streams'
import { nodeSettingsOf, type ServerConfig } from './config.js'

export { parseServerConfig, serverConfigSchema, type ServerConfig } from './config.js'

export interface RunningServer {
  readonly port: number
  /** The METRICS_PORT listener's port (the one chosen for METRICS_PORT=0), or null. */
  readonly metricsPort: number | null
  readonly nodeId: string
  close(): Promise<void>
}

/** A server node from its configuration: Redis, the configured storage, the node. */
export const startServer = async (
  config: ServerConfig,
  logger: Logger,
  opts: { registry?: Registry } = {},
): Promise<RunningServer> => {
  assertNativeUws(config.ALLOW_UWS_FALLBACK)
  const log = logger.child({ process: 'server', nodeId: config.NODE_ID })
  const { redis, second, disconnect } = await connectRedisPair({
    url: config.REDIS_URL,
    clusterNodes: config.REDIS_CLUSTER_NODES,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    name: `streambed-node-${config.NODE_ID}`,
    allowEviction: config.REDIS_ALLOW_EVICTION,
    logger: log,
  })
  try {
    const storage = await openStorage(config, log)
    const settings = nodeSettingsOf(config)
    const node = await startServerNode({
      ...settings,
      ...opts,
      redis,
      subscriber: second,
      storage,
      logger: log,
    })
    const host = config.HOST === '0.0.0.0' ? 'localhost' : config.HOST
    const url = `ws://${host}:${node.port}/<document>`
    const { port, metricsPort } = node
    log.info(
      { port, metricsPort, url, storage: storage.kind, auth: config.AUTH_MODE },
      'server node listening',
    )
    const close = async () => {
      log.info('server node stopping')
      await node.close()
      await storage.close()
      await redis.quit().catch(() => redis.disconnect())
      await second.quit().catch(() => second.disconnect())
      log.info('server node stopped')
    }
    return { port, metricsPort, nodeId: config.NODE_ID, close }
  } catch (err) {
    disconnect()
    throw err
  }
}
