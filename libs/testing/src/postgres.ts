import { execFile } from 'node:child_process'
import { chown, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { freePort } from './ports.js'
import { startProcess, type ManagedProcess } from './process.js'
import { dockerAvailable, useDocker } from './docker.js'

export interface PostgresServerOptions {
  /** Extra server settings, passed as `-c name=value` (e.g. `{ max_connections: '20' }`). */
  settings?: Readonly<Record<string, string>>
}

export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:<port>/postgres`, user `postgres`, trust auth. */
  readonly url: string
  readonly port: number
  /** Fast shutdown (clients are disconnected, a checkpoint is written) and start again on the same port and files. */
  restart(opts?: { downMs?: number }): Promise<void>
  /** Fast shutdown without restarting. */
  stop(): Promise<void>
  /** Starts a stopped server again. */
  start(): Promise<void>
  /** Immediate shutdown (no checkpoint: the next start runs crash recovery), like `pg_ctl stop -m immediate`. */
  kill(): Promise<void>
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

const execFileAsync = promisify(execFile)

/** The postgres OS user's ids when we run as root (Postgres refuses to run as root), else null. */
const postgresUserIds = async (): Promise<{ uid: number; gid: number } | null> => {
  if (process.getuid?.() !== 0) return null
  const [uid, gid] = await Promise.all([
    execFileAsync('id', ['-u', 'postgres']),
    execFileAsync('id', ['-g', 'postgres']),
  ])
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
}

/** Rejects when the process could not be spawned (a missing binary): it never exits then. */
const spawnFailure = (p: ManagedProcess, command: string): Promise<never> =>
  new Promise((_, reject) => {
    p.child.once('error', (err) =>
      reject(new Error(`could not run ${command} (is PostgreSQL installed?)`, { cause: err })),
    )
  })

const waitForQuery = async (
  url: string,
  proc: ManagedProcess | null,
  timeoutMs = 20_000,
): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 })
    client.on('error', () => {})
    try {
      await client.connect()
      await client.query('SELECT 1')
      return
    } catch (err) {
      const exited = proc && (proc.child.exitCode !== null || proc.child.signalCode !== null)
      if (exited || Date.now() > deadline) {
        const output = proc ? `\n--- output ---\n${proc.output.slice(-40).join('\n')}` : ''
        throw new Error(`Postgres at ${url} did not answer within ${timeoutMs} ms${output}`, {
          cause: err,
        })
      }
      await new Promise((r) => setTimeout(r, 50))
    } finally {
      await client.end().catch(() => {})
    }
  }
}

/**
 * A throwaway PostgreSQL cluster: `initdb` into a temporary directory and a local `postgres` on a
 * free loopback port (socket in the same directory, fsync off), or a testcontainers `postgres:15`
 * container when a Docker engine answers and STREAMBED_TEST_SERVICES is not `local`. For tests
 * that only need a database, `testDatabase()` is cheaper.
 */
export const startPostgresServer = async (
  opts: PostgresServerOptions = {},
): Promise<PostgresServer> => {
  const settings = Object.entries(opts.settings ?? {}).flatMap(([k, v]) => ['-c', `${k}=${v}`])
  if (useDocker() && (await dockerAvailable())) return startPostgresContainer(settings)
  const ids = await postgresUserIds()
  // `postgres` is spawned directly with the postgres user's ids rather than through `runuser`:
  // runuser turns any signal into SIGTERM (a "smart" shutdown that waits for clients) and then
  // SIGKILLs after 2 s, which leaves backends and shared memory behind.
  const asPostgres = ids ? { uid: ids.uid, gid: ids.gid } : {}
  const dir = await mkdtemp(join(tmpdir(), 'streambed-pg-'))
  if (ids) await chown(dir, ids.uid, ids.gid)
  const initdb = startProcess(
    'initdb',
    ['-D', dir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
    asPostgres,
  )
  const code = await Promise.race([initdb.exited, spawnFailure(initdb, 'initdb')]).catch(
    async (err: unknown) => {
      await rm(dir, { recursive: true, force: true })
      throw err
    },
  )
  if (code !== 0) {
    await rm(dir, { recursive: true, force: true })
    throw new Error(`initdb exited with ${code}:\n${initdb.output.slice(-40).join('\n')}`)
  }
  const port = await freePort()
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  // prettier-ignore
  const args = [
    '-D', dir,
    '-p', String(port),
    '-k', dir,
    '-c', 'listen_addresses=127.0.0.1',
    '-c', 'fsync=off',
    '-c', 'full_page_writes=off',
    ...settings,
  ]
  let proc: ManagedProcess | null = null
  const start = async () => {
    const p = startProcess('postgres', args, asPostgres)
    proc = p
    await Promise.race([waitForQuery(url, p), spawnFailure(p, 'postgres')])
  }
  // SIGINT: fast shutdown. SIGQUIT: immediate shutdown. (SIGTERM would wait for clients to leave.)
  const stop = async (signal: NodeJS.Signals) => {
    const p = proc
    proc = null
    if (p) await p.kill(signal)
  }
  const close = async () => {
    await stop('SIGQUIT')
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await start()
  } catch (err) {
    await close()
    throw err
  }
  return {
    url,
    port,
    start,
    stop: () => stop('SIGINT'),
    kill: () => stop('SIGQUIT'),
    restart: async ({ downMs = 0 } = {}) => {
      await stop('SIGINT')
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs))
      await start()
    },
    close,
    [Symbol.asyncDispose]: close,
  }
}

const startPostgresContainer = async (settings: readonly string[]): Promise<PostgresServer> => {
  const { GenericContainer, Wait } = await import('testcontainers')
  // A fixed host port: a dynamically mapped one may change when the container restarts.
  const port = await freePort()
  const container = await new GenericContainer('postgres:15')
    .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' })
    .withCommand(['postgres', '-c', 'fsync=off', '-c', 'full_page_writes=off', ...settings])
    .withExposedPorts({ container: 5432, host: port })
    // The entrypoint starts a temporary server for initialisation first: wait for the second one.
    .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
    .start()
  const url = `postgres://postgres@${container.getHost()}:${port}/postgres`
  let running = true
  const close = async () => {
    await container.stop({ remove: true })
  }
  // The image's PID 1 is the postmaster; stopping it stops the container.
  const signal = async (name: 'INT' | 'QUIT') => {
    await container.exec(['kill', `-${name}`, '1'])
    running = false
  }
  return {
    url,
    port,
    start: async () => {
      if (!running) await container.restart()
      running = true
      await waitForQuery(url, null)
    },
    stop: () => signal('INT'),
    kill: () => signal('QUIT'),
    restart: async ({ downMs = 0 } = {}) => {
      // The image's STOPSIGNAL is SIGINT: a fast shutdown.
      await container.restart({ timeout: 10_000 })
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs))
      await waitForQuery(url, null)
    },
    close,
    [Symbol.asyncDispose]: close,
  }
}

export interface TestDatabase {
  /** The base URL with `options=-c search_path=<schema>`: unqualified names resolve to the schema. */
  readonly url: string
  readonly schema: string
  /** Drops the schema and everything in it. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/** The local Postgres the machine and CI provide. */
const defaultDatabaseUrl = (): string =>
  process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

let schemaCounter = 0

/**
 * A schema of its own in an existing database (`baseUrl`, default DATABASE_URL or the local
 * `test` database), for tests that need tables but not a server they can stop.
 */
export const testDatabase = async (
  baseUrl: string = defaultDatabaseUrl(),
  label = 't',
): Promise<TestDatabase> => {
  // Lower case letters, digits and `_`, starting with a letter: no quoting needed anywhere.
  const clean = label
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_')
    .slice(0, 20)
  const schema = `${/^[a-z]/.test(clean) ? '' : 't_'}${clean}_${process.pid}_${Date.now().toString(36)}_${schemaCounter++}`
  const admin = new pg.Client({ connectionString: baseUrl })
  await admin.connect()
  try {
    await admin.query(`CREATE SCHEMA ${pg.escapeIdentifier(schema)}`)
  } finally {
    await admin.end()
  }
  const url = new URL(baseUrl)
  url.searchParams.set('options', `-c search_path=${schema}`)
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    const client = new pg.Client({ connectionString: baseUrl })
    await client.connect()
    try {
      await client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`)
    } finally {
      await client.end()
    }
  }
  return { url: url.toString(), schema, close, [Symbol.asyncDispose]: close }
}
