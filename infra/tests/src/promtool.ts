import { spawnSync } from 'node:child_process'
import { repoPath } from './repo.js'

/**
 * The path of a promtool, installing one with infra/prometheus/install-promtool.sh when none is
 * there (idempotent: a promtool on PATH or one installed before is used as is).
 */
export const ensurePromtool = (): string => {
  const script = repoPath('infra', 'prometheus', 'install-promtool.sh')
  const r = spawnSync('bash', [script], { encoding: 'utf8', timeout: 280_000 })
  const path = r.stdout?.trim().split('\n').at(-1)
  if (r.status !== 0 || !path) {
    throw new Error(
      `promtool is missing and ${script} could not install it (exit ${String(r.status)}):\n` +
        `${r.stderr ?? ''}${r.error ? String(r.error) : ''}`,
    )
  }
  return path
}

/** Runs promtool (synchronously): its exit code and output. */
export const runPromtool = (
  promtool: string,
  args: string[],
): { status: number | null; output: string } => {
  const r = spawnSync(promtool, args, { encoding: 'utf8', cwd: repoPath(), timeout: 120_000 })
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}` }
}
