import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const installed = new Map<string, string>()

/**
 * The path of the binary `name` for tests that run a real one, installing it with the
 * repository's `script` (a path from the repository root) when none is there: the project's
 * install scripts are idempotent (a binary on PATH or one installed before is used as is) and
 * print the binary's path last.
 */
export const ensureTool = (name: string, script: string): string => {
  const known = installed.get(name)
  if (known) return known
  const path = fileURLToPath(new URL(`../../../${script}`, import.meta.url))
  const r = spawnSync('bash', [path], { encoding: 'utf8', timeout: 280_000 })
  const binary = r.stdout?.trim().split('\n').at(-1)
  if (r.status !== 0 || !binary) {
    throw new Error(
      `${name} is missing and ${path} could not install it (exit ${String(r.status)}):\n` +
        `${r.stderr ?? ''}${r.error ? String(r.error) : ''}`,
    )
  }
  installed.set(name, binary)
  return binary
}

/** HAProxy, for the tests that run a real balancer (infra/haproxy/install-haproxy.sh). */
export const ensureHaproxy = (): string => ensureTool('haproxy', 'infra/haproxy/install-haproxy.sh')
