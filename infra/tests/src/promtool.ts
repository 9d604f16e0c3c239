import { spawnSync } from 'node:child_process'
import { ensureTool } from '@streambed/testing'
import { repoPath } from './repo.js'

/** promtool, installed with infra/prometheus/install-promtool.sh when none is there. */
export const ensurePromtool = (): string =>
  ensureTool('promtool', 'infra/prometheus/install-promtool.sh')

/** Runs promtool (synchronously): its exit code and output. */
export const runPromtool = (
  promtool: string,
  args: string[],
): { status: number | null; output: string } => {
  const r = spawnSync(promtool, args, { encoding: 'utf8', cwd: repoPath(), timeout: 120_000 })
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}` }
}
