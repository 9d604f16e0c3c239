/** Test fixtures for whole server nodes (not part of the build): `@streambed/server/testing`. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger } from '@streambed/common'
import { parseServerConfig } from '../config.js'
import { startServer, type RunningServer } from '../main.js'

export interface TestNode extends RunningServer {
  readonly url: string
  readonly httpUrl: string
  readonly storageDir: string
  [Symbol.asyncDispose](): Promise<void>
}

/**
 * An in-process server node on a free port, wired through the real composition root. `env` is
 * parsed like the process environment; REDIS_URL and REDIS_PREFIX are required.
 */
export const startTestNode = async (env: Record<string, string>): Promise<TestNode> => {
  const ownDir = env.STORAGE_DIR === undefined
  const storageDir = env.STORAGE_DIR ?? (await mkdtemp(join(tmpdir(), 'streambed-data-')))
  const config = parseServerConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    STORAGE_DIR: storageDir,
    DOC_LINGER_MS: '200',
    DRAIN_MS: '0',
    // vitest's module runner does not reach worker threads (they cannot load the TypeScript
    // source); thread paths are covered by child-process nodes (spawnNode).
    SYNC_THREADS: '0',
    ...env,
  })
  const logger = createLogger({ level: config.LOG_LEVEL, destination: process.stderr })
  let server: RunningServer
  try {
    server = await startServer(config, logger)
  } catch (err) {
    if (ownDir) await rm(storageDir, { recursive: true, force: true })
    throw err
  }
  const close = async () => {
    await server.close()
    if (ownDir) await rm(storageDir, { recursive: true, force: true })
  }
  return {
    ...server,
    close,
    url: `ws://127.0.0.1:${server.port}`,
    httpUrl: `http://127.0.0.1:${server.port}`,
    storageDir,
    [Symbol.asyncDispose]: close,
  }
}
