import { existsSync } from 'node:fs'
import { request } from 'node:http'

/**
 * Which backing services tests use: STREAMBED_TEST_SERVICES=local (local binaries: redis-server,
 * initdb/pg_ctl, s3rver), docker (testcontainers), or auto (default: docker when an engine answers).
 */
export const useDocker = (): boolean => {
  const mode = process.env.STREAMBED_TEST_SERVICES ?? 'auto'
  return mode === 'docker' || mode === 'auto'
}

let cached: Promise<boolean> | undefined

/** True when a Docker engine answers on its socket (or DOCKER_HOST). Never throws. */
export const dockerAvailable = (): Promise<boolean> => {
  cached ??= (async () => {
    if (process.env.STREAMBED_TEST_SERVICES === 'local') return false
    const socketPath = process.env.DOCKER_HOST?.startsWith('unix://')
      ? process.env.DOCKER_HOST.slice('unix://'.length)
      : '/var/run/docker.sock'
    if (process.env.DOCKER_HOST && !process.env.DOCKER_HOST.startsWith('unix://')) {
      // tcp:// engines: let testcontainers decide.
      try {
        const { getContainerRuntimeClient } = await import('testcontainers')
        await getContainerRuntimeClient()
        return true
      } catch {
        return false
      }
    }
    if (!existsSync(socketPath)) return false
    return new Promise<boolean>((resolve) => {
      const req = request({ socketPath, path: '/_ping', timeout: 1000 }, (res) => {
        res.resume()
        resolve(res.statusCode === 200)
      })
      req.on('error', () => resolve(false))
      req.on('timeout', () => {
        req.destroy()
        resolve(false)
      })
      req.end()
    })
  })()
  return cached
}
