import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

let haproxyPath: string | undefined

/**
 * The path of a haproxy binary for tests that run a real balancer, installing one with
 * infra/haproxy/install-haproxy.sh when none is there (idempotent: a haproxy on PATH or one
 * extracted before is used as is).
 */
export const ensureHaproxy = (): string => {
  if (haproxyPath) return haproxyPath
  const script = fileURLToPath(
    new URL('../../../infra/haproxy/install-haproxy.sh', import.meta.url),
  )
  const r = spawnSync('bash', [script], { encoding: 'utf8', timeout: 280_000 })
  const path = r.stdout?.trim().split('\n').at(-1)
  if (r.status !== 0 || !path) {
    throw new Error(
      `haproxy is missing and ${script} could not install it (exit ${String(r.status)}):\n` +
        `${r.stderr ?? ''}${r.error ? String(r.error) : ''}`,
    )
  }
  return (haproxyPath = path)
}
