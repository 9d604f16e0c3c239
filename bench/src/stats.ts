/** Small statistics and reporting helpers for benchmarks. */
import { execSync } from 'node:child_process'
import { appendFileSync, readFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { fileURLToPath } from 'node:url'

export const percentile = (values: readonly number[], p: number): number => {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[index] as number
}

export const summary = (values: readonly number[]) => ({
  n: values.length,
  p50: percentile(values, 50),
  p99: percentile(values, 99),
  max: percentile(values, 100),
})

export const fmt = (n: number, digits = 2): string =>
  Number.isFinite(n) ? n.toFixed(digits) : 'n/a'

export type Row = Record<string, string | number>

/** A markdown table of `rows` (columns from the first row). */
export const table = (rows: readonly Row[]): string => {
  const first = rows[0]
  if (!first) return '(no rows)\n'
  const cols = Object.keys(first)
  const line = (cells: readonly (string | number)[]) => `| ${cells.join(' | ')} |`
  return (
    [
      line(cols),
      line(cols.map(() => '---')),
      ...rows.map((r) => line(cols.map((c) => r[c] ?? ''))),
    ].join('\n') + '\n'
  )
}

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url))

export const machine = (): string => {
  const cpu = cpus()[0]?.model ?? 'unknown cpu'
  let commit = 'uncommitted'
  try {
    commit = execSync('git rev-parse --short HEAD', { cwd: repoRoot }).toString().trim()
    if (execSync('git status --porcelain -- apps libs bench', { cwd: repoRoot }).toString().trim())
      commit += '-dirty'
  } catch {
    // not a git checkout
  }
  return `${new Date().toISOString()} · commit ${commit} · ${cpus().length} × ${cpu} · ${Math.round(totalmem() / 2 ** 30)} GiB · Node ${process.version}`
}

/** CPU seconds (user + system) a process used so far, from /proc (Linux). */
export const cpuSeconds = (pid: number): number => {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    const ticks = Number(fields[11]) + Number(fields[12])
    return ticks / 100
  } catch {
    return NaN
  }
}

/** Appends a section to docs/benchmarks.md. */
export const record = (title: string, command: string, body: string): void => {
  appendFileSync(
    `${repoRoot}docs/benchmarks.md`,
    `\n### ${title}\n\n${machine()}\n\nCommand: \`${command}\`\n\n${body}\n`,
  )
}
