import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { Cluster, Redis } from 'ioredis'
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

/**
 * The built editor demo (apps/demo/dist), served at / with DEMO=on. A node without it (the demo
 * package not installed, or not built) still starts: it warns and answers / with a 404 saying why.
 */
const demoSite = (): { dir: string | null; notBuilt: string } => {
  const build = 'run "npm run build" (or npm run build -w @streambed/demo)'
  let demoPackage: string
  try {
    demoPackage = createRequire(import.meta.url).resolve('@streambed/demo/package.json')
  } catch (err) {
    // The demo is optional: a failed lookup is the site's problem, not the node's.
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err)
    return {
      dir: null,
      notBuilt: `the demo page is not installed (@streambed/demo cannot be resolved: ${why}): run "npm ci", then ${build}`,
    }
  }
  return {
    dir: join(dirname(demoPackage), 'dist'),
    notBuilt: `the demo page is not built: ${build}`,
  }
}

/**
 * With WEBHOOK_URLS, the node queues document.deleted for the workers to deliver (BullMQ is loaded
 * only then: a node without webhooks does not carry it).
 */
const webhooksOf = async (config: ServerConfig, connection: Redis | Cluster, logger: Logger) => {
  const { createWebhooks, webhookSettings } = await import('@streambed/webhooks')
  const settings = webhookSettings(config)
  if (!settings) return null
  return createWebhooks({ connection, redisPrefix: config.REDIS_PREFIX, settings, logger })
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
  let webhooks: Awaited<ReturnType<typeof webhooksOf>> = null
  try {
    const storage = await openStorage(config, log)
    const settings = nodeSettingsOf(config)
    webhooks = config.WEBHOOK_URLS ? await webhooksOf(config, redis, log) : null
    const hooks = webhooks
    const node = await startServerNode({
      ...settings,
      ...opts,
      ...(hooks
        ? { announceDelete: (doc: string) => hooks.emit({ type: 'document.deleted', doc }) }
        : {}),
      site: config.DEMO === 'on' ? demoSite() : null,
      redis,
      subscriber: second,
      storage,
      logger: log,
    })
    const host = config.HOST === '0.0.0.0' ? 'localhost' : config.HOST
    const url = `ws://${host}:${node.port}/<document>`
    const { port, metricsPort } = node
    const demo = config.DEMO === 'on' ? `http://${host}:${node.port}/` : undefined
    log.info(
      { port, metricsPort, url, demo, storage: storage.kind, auth: config.AUTH_MODE },
      'server node listening',
    )
    const close = async () => {
      log.info('server node stopping')
      await node.close()
      await webhooks?.close()
      await storage.close()
      await redis.quit().catch(() => redis.disconnect())
      await second.quit().catch(() => second.disconnect())
      log.info('server node stopped')
    }
    return { port, metricsPort, nodeId: config.NODE_ID, close }
  } catch (err) {
    await webhooks?.close()
    disconnect()
    throw err
  }
}
