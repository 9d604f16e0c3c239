/**
 * Test helper (not built): a real HAProxy in front of server nodes, run from the committed
 * infra/haproxy/haproxy.cfg (the balancer docker-compose.yml uses) with only what must differ on
 * loopback replaced: listen addresses, the server list (fixed ports instead of Docker's DNS) and
 * the health check timings.
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  ensureHaproxy,
  freePort,
  killOnExit,
  startProcess,
  type ManagedProcess,
} from '@streambed/testing'

const repoFile = (path: string) => fileURLToPath(new URL(`../../../../${path}`, import.meta.url))

/** The committed configuration (docker-compose.yml mounts it). */
export const committedConfigPath = repoFile('infra/haproxy/haproxy.cfg')

/** Health check timings (`default-server` keywords), replacing the committed seconds. */
export interface CheckTimings {
  interMs: number
  fastinterMs: number
  downinterMs: number
  fall: number
  rise: number
}

export interface TestConfigOptions {
  /** Port of the `streambed` frontend (clients connect here). */
  port: number
  /** Port of the `stats` frontend. */
  statsPort: number
  /** Backend ports on 127.0.0.1: servers `node1`..`nodeN` of backend `nodes`. */
  backends: readonly number[]
  checks: CheckTimings
}

interface Section {
  /** The header line (`backend nodes`) and the lines up to the next header. */
  header: string
  lines: string[]
}

const SECTION = /^(global|defaults|frontend|backend|listen|resolvers|peers|userlist|program)\b/

const sectionsOf = (text: string): { preamble: string[]; sections: Section[] } => {
  const preamble: string[] = []
  const sections: Section[] = []
  for (const line of text.split('\n')) {
    if (SECTION.test(line)) sections.push({ header: line.trim(), lines: [] })
    else (sections.at(-1)?.lines ?? preamble).push(line)
  }
  return { preamble, sections }
}

/** Replaces the one line of `section` that starts with `keyword`; throws if there is not one. */
const replaceLine = (section: Section, keyword: string, by: (line: string) => string[]) => {
  const at = section.lines.flatMap((l, i) => (l.trim().split(/\s+/)[0] === keyword ? [i] : []))
  if (at.length !== 1) {
    throw new Error(
      `infra/haproxy/haproxy.cfg changed shape: expected one "${keyword}" in "${section.header}", ` +
        `found ${at.length}; update apps/cli/src/testing/haproxy.ts`,
    )
  }
  const i = at[0] as number
  section.lines.splice(i, 1, ...by(section.lines[i] as string))
}

const sectionNamed = (sections: Section[], header: string): Section => {
  const s = sections.find((x) => x.header === header)
  if (!s) throw new Error(`infra/haproxy/haproxy.cfg has no "${header}" section`)
  return s
}

/** Sets `keyword value` in a `default-server`/`server` line (the keyword must be there). */
const setKeyword = (line: string, keyword: string, value: string): string => {
  const re = new RegExp(`(\\s${keyword}\\s+)\\S+`)
  if (!re.test(line)) throw new Error(`infra/haproxy/haproxy.cfg: no "${keyword}" in: ${line}`)
  return line.replace(re, `$1${value}`)
}

/**
 * The committed configuration made to run on loopback: frontends bound to 127.0.0.1 ports, the
 * Docker DNS server template replaced by fixed servers, check timings replaced, resolvers
 * dropped. Everything else (balancing, health check request, timeouts, retries) stays as
 * committed. Throws when the committed file no longer has the expected shape.
 */
export const testConfig = (committed: string, opts: TestConfigOptions): string => {
  const { preamble, sections } = sectionsOf(committed)
  replaceLine(sectionNamed(sections, 'frontend streambed'), 'bind', () => [
    `  bind 127.0.0.1:${opts.port}`,
  ])
  replaceLine(sectionNamed(sections, 'frontend stats'), 'bind', () => [
    `  bind 127.0.0.1:${opts.statsPort}`,
  ])
  const backend = sectionNamed(sections, 'backend nodes')
  const { checks } = opts
  replaceLine(backend, 'default-server', (line) => [
    [
      ['inter', `${checks.interMs}ms`],
      ['fastinter', `${checks.fastinterMs}ms`],
      ['downinter', `${checks.downinterMs}ms`],
      ['fall', String(checks.fall)],
      ['rise', String(checks.rise)],
    ].reduce((l, [k, v]) => setKeyword(l, k as string, v as string), line),
  ])
  replaceLine(backend, 'server-template', () =>
    opts.backends.map((port, i) => `  server node${i + 1} 127.0.0.1:${port}`),
  )
  const kept = sections.filter((s) => !s.header.startsWith('resolvers '))
  return [...preamble, ...kept.flatMap((s) => [s.header, ...s.lines])].join('\n')
}

/** One server of backend `nodes` in HAProxy's statistics. */
export interface ServerStat {
  name: string
  /** `UP`, `DOWN`, `UP 1/2` (going down), `DOWN 1/2` (coming up), `MAINT`, … */
  status: string
  /** Current sessions (WebSocket tunnels included) and sessions so far. */
  scur: number
  stot: number
  /** Connection errors, retries, and redispatches to another server. */
  econ: number
  wretr: number
  wredis: number
  checkStatus: string
}

export interface Haproxy {
  readonly port: number
  /** `ws://127.0.0.1:<port>`, for y-websocket clients. */
  readonly url: string
  readonly statsUrl: string
  readonly config: string
  readonly proc: ManagedProcess
  /** The servers of backend `nodes`, from the stats page's CSV. */
  servers(): Promise<ServerStat[]>
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

const parseStats = (csv: string): ServerStat[] => {
  const [head = '', ...rows] = csv.trim().split('\n')
  const cols = head.replace(/^# /, '').split(',')
  const col = (row: string[], name: string) => row[cols.indexOf(name)] ?? ''
  return rows
    .map((r) => r.split(','))
    .filter(
      (r) => col(r, 'pxname') === 'nodes' && !['FRONTEND', 'BACKEND'].includes(col(r, 'svname')),
    )
    .map((r) => ({
      name: col(r, 'svname'),
      status: col(r, 'status'),
      scur: Number(col(r, 'scur')),
      stot: Number(col(r, 'stot')),
      econ: Number(col(r, 'econ')),
      wretr: Number(col(r, 'wretr')),
      wredis: Number(col(r, 'wredis')),
      checkStatus: col(r, 'check_status'),
    }))
}

/**
 * Starts HAProxy (Debian's, see ensureHaproxy) with the committed configuration for `backends`
 * on free loopback ports, and waits until its stats page answers.
 */
export const startHaproxy = async (opts: {
  backends: readonly number[]
  checks: CheckTimings
}): Promise<Haproxy> => {
  const binary = ensureHaproxy()
  const [port, statsPort] = [await freePort(), await freePort()]
  const config = testConfig(readFileSync(committedConfigPath, 'utf8'), {
    ...opts,
    port,
    statsPort,
  })
  const dir = await mkdtemp(join(tmpdir(), 'streambed-haproxy-'))
  const file = join(dir, 'haproxy.cfg')
  await writeFile(file, config)
  // -db: stay in the foreground, logs on stdout (the committed `log stdout`).
  const proc = startProcess(binary, ['-db', '-f', file])
  killOnExit(proc)
  void proc.exited.then(() => rm(dir, { recursive: true, force: true }))
  const statsUrl = `http://127.0.0.1:${statsPort}/`
  const servers = async () => {
    const res = await fetch(`${statsUrl};csv`, { signal: AbortSignal.timeout(2_000) })
    if (!res.ok) throw new Error(`HAProxy stats answered ${res.status}`)
    return parseStats(await res.text())
  }
  const deadline = Date.now() + 20_000
  for (;;) {
    const { exitCode, signalCode } = proc.child
    if (exitCode !== null || signalCode !== null) {
      const code = String(exitCode ?? signalCode)
      throw new Error(`haproxy exited (${code}):\n${proc.output.join('\n')}\n${config}`)
    }
    const ok = await servers().then(
      () => true,
      () => false,
    )
    if (ok) break
    if (Date.now() > deadline) {
      await proc.kill('SIGKILL')
      throw new Error(`haproxy stats did not answer within 20 s:\n${proc.output.join('\n')}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  const close = async () => {
    await proc.kill('SIGTERM')
  }
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    statsUrl,
    config,
    proc,
    servers,
    close,
    [Symbol.asyncDispose]: close,
  }
}
