import { expect, it } from 'vitest'
import { freePort, startRedisServer, uniquePrefix } from '@streambed/testing'
import { spawnNode, startCliProcess } from './testing/nodes.js'

const run = (args: string[], env: Record<string, string>) =>
  startCliProcess(args, { AUTH_MODE: 'none', ...env })

it('explains in one line how to get a Redis when none answers', async () => {
  const port = await freePort()
  const proc = run(['server'], { REDIS_URL: `redis://127.0.0.1:${port}`, PORT: '0' })
  expect(await proc.exited).toBe(69)
  const message = proc.output.filter((l) => l.startsWith('streambed:'))
  expect(message).toHaveLength(1)
  expect(message[0]).toContain(`Cannot reach Redis at redis://127.0.0.1:${port}`)
  expect(message[0]).toContain('apt install redis-server')
  expect(message[0]).toContain('--spawn-redis')
})

it('starts a local redis-server for development with --spawn-redis', async () => {
  const port = await freePort()
  const proc = run(['server', '--spawn-redis'], {
    REDIS_URL: `redis://127.0.0.1:${port}`,
    PORT: '0',
    HOST: '127.0.0.1',
    STORAGE_DIR: `/tmp/streambed-cli-${port}`,
  })
  try {
    const line = await proc.waitForLine(/server node listening/)
    const httpPort = (JSON.parse(line) as { port: number }).port
    const ready = await fetch(`http://127.0.0.1:${httpPort}/readyz`)
    expect(ready.status).toBe(200)
  } finally {
    await proc.kill('SIGTERM')
  }
  expect(await proc.exited).toBe(0)
})

it('names every bad variable and exits with 78', async () => {
  const proc = run(['server'], { PORT: 'eighty', STORAGE: 'mongo', REDIS_URL: 'http://x' })
  expect(await proc.exited).toBe(78)
  const text = proc.output.join('\n')
  expect(text).toContain('PORT: expected an integer 0..65535, got "eighty"')
  expect(text).toContain('STORAGE: expected one of fs')
  expect(text).toContain('REDIS_URL: expected a URL like redis://')
})

it('refuses to start a server node until AUTH_MODE is chosen', async () => {
  const proc = run(['server'], { AUTH_MODE: '' })
  expect(await proc.exited).toBe(78)
  expect(proc.output.join('\n')).toContain('AUTH_MODE: is required; expected one of none | jwt')
})

it('rejects an unknown command with the usage text', async () => {
  const proc = run(['serve'], {})
  expect(await proc.exited).toBe(78)
  expect(proc.output.join('\n')).toContain('unknown command "serve"')
  expect(proc.output.join('\n')).toContain('Usage: streambed <command>')
})

it('refuses the slow uWebSockets.js fallback unless ALLOW_UWS_FALLBACK is set', async () => {
  await using redis = await startRedisServer()
  const env = {
    REDIS_URL: redis.url,
    REDIS_PREFIX: uniquePrefix('uws'),
    PORT: '0',
    UWS_USE_FALLBACK: 'true',
  }
  const refused = run(['server'], env)
  expect(await refused.exited).toBe(78)
  expect(refused.output.join('\n')).toContain('set ALLOW_UWS_FALLBACK=true to run anyway')
  // Explicitly allowed, the fallback serves.
  await using node = await spawnNode({ ...env, ALLOW_UWS_FALLBACK: 'true' })
  expect((await fetch(`${node.httpUrl}/healthz`)).status).toBe(200)
})
