import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort } from './ports.js'
import { startProcess, type ManagedProcess } from './process.js'
import { dockerAvailable, useDocker } from './docker.js'

export interface RedisServerOptions {
  /** Append-only file persistence (what a restart must not lose). Default false. */
  aof?: boolean
  /** `always` makes every acknowledged write durable before the reply. Default `always`. */
  appendfsync?: 'always' | 'everysec'
}

export interface RedisServer {
  readonly url: string
  readonly port: number
  /** Process id of the local redis-server (null in a container), for CPU accounting. */
  readonly pid: number | null
  /** Stops the server (SIGTERM: Redis flushes the AOF) and starts it again on the same port and files. */
  restart(opts?: { downMs?: number }): Promise<void>
  /** Stops the server without restarting it. */
  stop(): Promise<void>
  /** Starts a stopped server again. */
  start(): Promise<void>
  /** SIGKILL, no flush: a crash. */
  kill(): Promise<void>
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

const waitForPing = async (url: string, timeoutMs = 10_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const client = new Redis(url, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    })
    client.on('error', () => {})
    try {
      await client.connect()
      await client.ping()
      return
    } catch (err) {
      if (Date.now() > deadline)
        throw new Error(`Redis at ${url} did not answer within ${timeoutMs} ms`, { cause: err })
      await new Promise((r) => setTimeout(r, 50))
    } finally {
      client.disconnect()
    }
  }
}

/**
 * A throwaway Redis 7: a local `redis-server` on a free loopback port with its files in a temporary
 * directory, or a testcontainers `redis:7` container when a Docker engine answers and
 * STREAMBED_TEST_SERVICES is not `local`.
 */
export const startRedisServer = async (opts: RedisServerOptions = {}): Promise<RedisServer> => {
  if (useDocker() && (await dockerAvailable())) return startRedisContainer(opts)
  const port = await freePort()
  const dir = await mkdtemp(join(tmpdir(), 'streambed-redis-'))
  const url = `redis://127.0.0.1:${port}`
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--dir',
    dir,
    '--appendonly',
    opts.aof ? 'yes' : 'no',
    '--appendfsync',
    opts.appendfsync ?? 'always',
    '--daemonize',
    'no',
  ]
  let proc: ManagedProcess | null = null
  const start = async () => {
    proc = startProcess('redis-server', args)
    await waitForPing(url)
  }
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const p = proc
    proc = null
    if (p) await p.kill(signal)
  }
  await start()
  const close = async () => {
    await stop('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  }
  return {
    url,
    port,
    get pid() {
      return proc?.child.pid ?? null
    },
    start,
    stop: () => stop('SIGTERM'),
    kill: () => stop('SIGKILL'),
    restart: async ({ downMs = 0 } = {}) => {
      await stop('SIGTERM')
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs))
      await start()
    },
    close,
    [Symbol.asyncDispose]: close,
  }
}

const startRedisContainer = async (opts: RedisServerOptions): Promise<RedisServer> => {
  const { GenericContainer, Wait } = await import('testcontainers')
  const command = [
    'redis-server',
    '--save',
    '',
    '--appendonly',
    opts.aof ? 'yes' : 'no',
    '--appendfsync',
    opts.appendfsync ?? 'always',
  ]
  const container = await new GenericContainer('redis:7.2')
    .withCommand(command)
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage('Ready to accept connections'))
    .start()
  const port = container.getMappedPort(6379)
  const url = `redis://${container.getHost()}:${port}`
  let running = true
  const close = async () => {
    await container.stop({ remove: true })
  }
  return {
    url,
    port,
    pid: null,
    start: async () => {
      if (!running) await container.restart()
      running = true
      await waitForPing(url)
    },
    stop: async () => {
      await container.exec(['redis-cli', 'shutdown'])
      running = false
    },
    kill: async () => {
      await container.exec(['sh', '-c', 'kill -9 1'])
      running = false
    },
    restart: async ({ downMs = 0 } = {}) => {
      await container.restart({ timeout: 10_000 })
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs))
      await waitForPing(url)
    },
    close,
    [Symbol.asyncDispose]: close,
  }
}

let prefixCounter = 0
/** A Redis key prefix no other test uses. */
export const uniquePrefix = (label = 't'): string =>
  `${label.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 20)}-${process.pid}-${Date.now().toString(36)}-${prefixCounter++}`
