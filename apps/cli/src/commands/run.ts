import { Registry } from 'prom-client'
import { AppError, createLogger, onShutdownSignal, type Env } from '@streambed/common'
import { fail } from '../cli-io.js'
import { findRedisServer, isLoopbackRedis, redisAnswers, spawnDevRedis } from '../dev-redis.js'

const redisHelp = (url: string): string => {
  const spawnHint = findRedisServer()
    ? ' or rerun with --spawn-redis (e.g. npm start -- --spawn-redis) to start the redis-server found on PATH'
    : ''
  return (
    `Cannot reach Redis at ${url}. Start Redis 7+: "sudo apt install redis-server", ` +
    `"brew install redis && brew services start redis" or "docker run -d -p 6379:6379 redis:7"${spawnHint}; ` +
    'or point REDIS_URL at your Redis.'
  )
}

/**
 * `streambed server | worker | all`: the long-running processes. A production node (`server`)
 * must be told AUTH_MODE; `all` (development, `npm start`) runs without authentication, warned.
 */
export const run = async (
  command: 'server' | 'worker' | 'all',
  flags: ReadonlySet<string>,
  env: Env,
): Promise<void> => {
  // Each app is loaded only if the command runs it: a server node never loads the worker's
  // modules (its jobs, backups and merger), nor a worker the node's.
  const serverApp = command === 'worker' ? null : await import('@streambed/server')
  const workerApp = command === 'server' ? null : await import('@streambed/worker-app')
  // Parse everything the command needs first, so every configuration problem shows at once.
  const serverConfig =
    serverApp?.parseServerConfig(env, {
      requireAuthMode: command === 'server',
      demoByDefault: command === 'all',
    }) ?? null
  const workerConfig = workerApp?.parseWorkerConfig(env) ?? null
  const config = serverConfig ?? workerConfig
  if (!config) throw new AppError('INTERNAL', 'no configuration')
  const logger = createLogger({ level: config.LOG_LEVEL, base: { pid: process.pid } })
  if (serverConfig?.AUTH_MODE === 'none')
    logger.warn(
      'AUTH_MODE=none: anyone who reaches this port can read and write every document. ' +
        'Set AUTH_MODE=jwt for anything but local development (see the README, Security).',
    )

  if (!(await redisAnswers(config.REDIS_URL))) {
    if (flags.has('--spawn-redis') && isLoopbackRedis(config.REDIS_URL) && findRedisServer()) {
      logger.warn(
        { url: config.REDIS_URL },
        'no Redis answering; starting a local redis-server for development (--spawn-redis)',
      )
      await spawnDevRedis(config.REDIS_URL, config.STORAGE_DIR)
    } else {
      throw new AppError('REDIS_UNAVAILABLE', redisHelp(config.REDIS_URL))
    }
  }

  const registry = new Registry()
  const server =
    serverApp && serverConfig
      ? await serverApp.startServer(serverConfig, logger, { registry })
      : null
  // In `all` the worker shares the node's /metrics and does not listen on a port of its own.
  const worker =
    workerApp && workerConfig
      ? await workerApp.startWorkerApp(
          workerConfig,
          logger,
          server ? { listen: false, registry } : {},
        )
      : null
  onShutdownSignal((signal) => {
    logger.info({ signal }, 'shutting down')
    Promise.all([server?.close(), worker?.close()]).then(
      () => {
        logger.flush()
        process.exit(0)
      },
      (err: unknown) => fail(err, logger),
    )
  })
}
