import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'
import { Redis } from 'ioredis'
import { AppError, sleep } from '@streambed/common'

/** Path of `redis-server` if it is on PATH. */
export const findRedisServer = (): string | null => {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'redis-server')
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not in this directory
    }
  }
  return null
}

export const isLoopbackRedis = (url: string): boolean => {
  const host = new URL(url).hostname
  return host === '127.0.0.1' || host === 'localhost' || host === '::1' || host === '[::1]'
}

/** True if a Redis answers PING at `url` within a second. */
export const redisAnswers = async (url: string): Promise<boolean> => {
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1000,
  })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.ping()
    return true
  } catch {
    return false
  } finally {
    client.disconnect()
  }
}

/**
 * Development convenience (`--spawn-redis`): starts `redis-server` on the port of `url`, with an
 * append-only file under `<dataDir>/redis`, and stops it when this process exits.
 */
export const spawnDevRedis = async (url: string, dataDir: string): Promise<ChildProcess> => {
  const binary = findRedisServer()
  if (!binary) throw new AppError('CONFIG', '--spawn-redis: no redis-server on PATH')
  const port = new URL(url).port || '6379'
  const dir = join(dataDir, 'redis')
  await mkdir(dir, { recursive: true })
  const child = spawn(
    binary,
    ['--port', port, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--dir', dir],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  )
  process.on('exit', () => child.kill('SIGTERM'))
  for (let i = 0; i < 50; i++) {
    if (await redisAnswers(url)) return child
    if (child.exitCode !== null) break
    await sleep(100)
  }
  child.kill('SIGKILL')
  throw new AppError(
    'REDIS_UNAVAILABLE',
    `--spawn-redis: redis-server did not start on port ${port}`,
  )
}
