/**
 * `streambed <command>`: one binary for every process kind.
 *   server   a server node (WebSocket + HTTP on PORT)
 *   worker   a compaction worker
 *   all      server node and worker in one process (development default of `npm start`)
 */
import { Registry } from 'prom-client'
import {
  AppError,
  createLogger,
  describeError,
  onShutdownSignal,
  type Logger,
} from '@streambed/common'
import { parseServerConfig, startServer } from '@streambed/server'
import { parseWorkerConfig, startWorkerApp } from '@streambed/worker-app'
import { findRedisServer, isLoopbackRedis, redisAnswers, spawnDevRedis } from './dev-redis.js'

const usage = `Usage: streambed <command> [--spawn-redis]

Commands:
  server   run a server node (y-websocket protocol + HTTP API on PORT)
  worker   run a compaction worker
  all      run a server node and a worker in one process (development)
  help     show this text

Options:
  --spawn-redis   if no Redis answers at REDIS_URL (on this machine), start a local
                  redis-server for development, with its data in STORAGE_DIR/redis

Configuration comes from environment variables; see the README for the full table.`

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

const fail = (err: unknown, logger?: Logger): never => {
  const d = describeError(err)
  if (logger && d.code === 'INTERNAL') logger.fatal({ err }, 'fatal error')
  process.stderr.write(
    `streambed: ${d.expose ? d.message : `internal error: ${err instanceof Error ? err.stack : String(err)}`}\n`,
  )
  process.exit(d.exitCode || 1)
}

const main = async (argv: readonly string[]): Promise<void> => {
  const flags = new Set(argv.filter((a) => a.startsWith('-')))
  const [command = 'help'] = argv.filter((a) => !a.startsWith('-'))
  if (command === 'help' || flags.has('--help') || flags.has('-h')) {
    process.stdout.write(`${usage}\n`)
    return
  }
  if (!['server', 'worker', 'all'].includes(command)) {
    throw new AppError('CONFIG', `unknown command "${command}"\n\n${usage}`)
  }
  // Parse everything the command needs first, so every configuration problem shows at once.
  const serverConfig = command === 'worker' ? null : parseServerConfig(process.env)
  const workerConfig = command === 'server' ? null : parseWorkerConfig(process.env)
  const config = serverConfig ?? workerConfig
  if (!config) throw new AppError('INTERNAL', 'no configuration')
  const logger = createLogger({ level: config.LOG_LEVEL, base: { pid: process.pid } })

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
  const server = serverConfig ? await startServer(serverConfig, logger, { registry }) : null
  // In `all` the worker shares the node's /metrics and does not listen on a port of its own.
  const worker = workerConfig
    ? await startWorkerApp(workerConfig, logger, server ? { listen: false, registry } : {})
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

main(process.argv.slice(2)).catch((err: unknown) => fail(err))
