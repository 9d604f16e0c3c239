/**
 * Test and benchmark helpers (not built): the `streambed` command as child processes,
 * `@streambed/cli/testing`. This package owns its entry, so only it knows where the entry is.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { killOnExit, startProcess, type ManagedProcess } from '@streambed/testing'

/** The package directory (apps/cli): the working directory of the processes started here. */
export const cliDir = fileURLToPath(new URL('../../', import.meta.url))

/** `node <args> streambed <command>` running the TypeScript source, so tests need no build. */
export const cliArgs = (command: string): string[] => [
  '--conditions=streambed-source',
  '--import',
  'tsx',
  fileURLToPath(new URL('../main.ts', import.meta.url)),
  command,
]

/**
 * `streambed <args>` (from the source) as a child process in the CLI's directory, with only
 * PATH, HOME and `env` in its environment: what a user's shell would give it.
 */
export const startCliProcess = (
  args: readonly string[],
  env: Record<string, string>,
): ManagedProcess => {
  const [command = 'help', ...rest] = args
  return startProcess(process.execPath, [...cliArgs(command), ...rest], {
    cwd: cliDir,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
  })
}

/**
 * `node <args> bin/streambed.js <command>`: the compiled CLI users run (needs `npm run build`).
 * Benchmarks use it: tsx keeps function names by wrapping every function (esbuild keepNames),
 * which costs memory per closure and CPU that production does not pay.
 */
export const builtCliArgs = (command: string): string[] => [
  fileURLToPath(new URL('../../bin/streambed.js', import.meta.url)),
  command,
]

export interface SpawnedProcessNode {
  readonly nodeId: string
  readonly port: number
  readonly url: string
  readonly httpUrl: string
  readonly proc: ManagedProcess
  /** SIGKILL: a crash, nothing flushed. */
  crash(): Promise<void>
  /** SIGTERM: graceful shutdown. */
  stop(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

let counter = 0

/**
 * Starts `streambed <command>` (default `server`) as a child process on a free port and waits until
 * it listens. `env` adds to a minimal environment (REDIS_URL and REDIS_PREFIX are needed).
 */
export const spawnNode = async (
  env: Record<string, string>,
  opts: {
    command?: 'server' | 'worker' | 'all'
    storageDir?: string
    /** Extra Node.js options, e.g. ['--cpu-prof'] (not allowed in NODE_OPTIONS). */
    nodeArgs?: string[]
    /** Run the compiled CLI (see builtCliArgs) instead of the TypeScript source. */
    built?: boolean
    /**
     * false: return as soon as the process is spawned (port 0), for a process expected to die
     * before it logs readiness (a worker with a crash hook may take a task first).
     */
    waitReady?: boolean
    /** How long the start may take before the process is killed and this throws; default 20 s. */
    startTimeoutMs?: number
    /** SIGKILL the process if the test process exits first (see killOnExit). */
    killOnExit?: boolean
  } = {},
): Promise<SpawnedProcessNode> => {
  if (env.LOG_LEVEL && !['info', 'debug', 'trace'].includes(env.LOG_LEVEL)) {
    throw new Error(
      `spawnNode needs LOG_LEVEL info or lower to see the "listening" line, got ${env.LOG_LEVEL}`,
    )
  }
  const nodeId = env.NODE_ID ?? `test-node-${process.pid}-${counter++}`
  const given = opts.storageDir ?? env.STORAGE_DIR
  const storageDir = given ?? (await mkdtemp(join(tmpdir(), 'streambed-data-')))
  // A directory this helper created is removed once the process is gone.
  const cleanUp = () =>
    given === undefined ? rm(storageDir, { recursive: true, force: true }) : Promise.resolve()
  const proc = startProcess(
    process.execPath,
    [...(opts.nodeArgs ?? []), ...(opts.built ? builtCliArgs : cliArgs)(opts.command ?? 'server')],
    {
      cwd: cliDir,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
        AUTH_MODE: 'none',
        // Graceful stops in tests close sockets at once; the drain test sets its own.
        DRAIN_MS: '0',
        STORAGE_DIR: storageDir,
        NODE_ID: nodeId,
        ...env,
      },
    },
  )
  void proc.exited.then(cleanUp)
  if (opts.killOnExit) killOnExit(proc)
  let port = 0
  if (opts.waitReady !== false) {
    try {
      // A worker alone logs "worker started" with its HTTP port; a node logs "server node
      // listening".
      const line = await proc.waitForLine(
        opts.command === 'worker' ? /"msg":"worker started"/ : /server node listening/,
        opts.startTimeoutMs,
      )
      if (opts.command === 'all')
        await proc.waitForLine(/"msg":"worker started"/, opts.startTimeoutMs)
      port = (JSON.parse(line) as { port: number }).port
    } catch (err) {
      await proc.kill('SIGKILL')
      throw err
    }
  }
  const crash = async () => {
    await proc.kill('SIGKILL')
  }
  return {
    nodeId,
    port,
    url: `ws://127.0.0.1:${port}`,
    httpUrl: `http://127.0.0.1:${port}`,
    proc,
    crash,
    stop: async () => {
      await proc.kill('SIGTERM')
    },
    [Symbol.asyncDispose]: crash,
  }
}
