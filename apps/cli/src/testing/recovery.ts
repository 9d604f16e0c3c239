/**
 * Test helpers (not built) for the operator's commands as an operator runs them: `streambed
 * <command>` as a child process with its stdout, stderr and exit code kept apart; the storage a
 * disaster loses (and the empty one that replaces it); Yjs state compared byte for byte.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { openBackupTarget } from '@streambed/recovery'
import {
  s3ClientOptions,
  startS3Server,
  testDatabase,
  type TestClient,
  type TestDatabase,
} from '@streambed/testing'
import { cliArgs, cliDir, type SpawnedProcessNode } from './nodes.js'

export interface CliRun {
  readonly args: readonly string[]
  /** The exit code, or the signal that ended the process. */
  readonly code: number | string
  readonly stdout: string
  readonly stderr: string
  /** It was killed after running `hangMs` (see startCli). */
  readonly hung: boolean
}

export interface RunningCli {
  /** stderr lines so far (progress, errors). */
  readonly stderrLines: string[]
  /** Resolves with the first stderr line matching `pattern`; rejects if the command ends first. */
  waitForStderr(pattern: RegExp): Promise<string>
  readonly result: Promise<CliRun>
}

/** A command still running after this long is taken for hung, killed and reported as such. */
const HANG_MS = 90_000

/**
 * Starts `streambed <args>` (the TypeScript source, see cliArgs) with a minimal environment plus
 * `env` (REDIS_URL, REDIS_PREFIX and the STORAGE settings of the deployment). A command that is
 * still running after `hangMs` is killed, so a hang fails with what it printed.
 */
export const startCli = (
  args: readonly string[],
  env: Record<string, string>,
  opts: { hangMs?: number } = {},
): RunningCli => {
  const [command = 'help', ...rest] = args
  const child = spawn(process.execPath, [...cliArgs(command), ...rest], {
    cwd: cliDir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
  })
  const out: Buffer[] = []
  const err: Buffer[] = []
  const stderrLines: string[] = []
  const waiters = new Set<{ pattern: RegExp; resolve: (line: string) => void }>()
  let partial = ''
  child.stdout.on('data', (c: Buffer) => out.push(c))
  child.stderr.on('data', (c: Buffer) => {
    err.push(c)
    const lines = (partial + c.toString()).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) {
      stderrLines.push(line)
      for (const w of waiters)
        if (w.pattern.test(line)) {
          waiters.delete(w)
          w.resolve(line)
        }
    }
  })
  let hung = false
  const timer = setTimeout(() => {
    hung = true
    child.kill('SIGKILL')
  }, opts.hangMs ?? HANG_MS)
  // A test process that ends first (a timeout) takes the command with it.
  const killOnExit = () => child.kill('SIGKILL')
  process.once('exit', killOnExit)
  const result = new Promise<CliRun>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      process.off('exit', killOnExit)
      resolve({
        args,
        code: code ?? signal ?? 'unknown',
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        hung,
      })
    })
  })
  return {
    stderrLines,
    result,
    waitForStderr: (pattern) => {
      const seen = stderrLines.find((l) => pattern.test(l))
      if (seen !== undefined) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const waiter = { pattern, resolve }
        waiters.add(waiter)
        void result.then((run) => {
          if (waiters.delete(waiter))
            reject(
              new Error(
                `streambed ${args.join(' ')} ended (${run.code}) before ${String(pattern)}`,
              ),
            )
        })
      })
    },
  }
}

/** Runs `streambed <args>` to its end. */
export const runCli = (args: readonly string[], env: Record<string, string>): Promise<CliRun> =>
  startCli(args, env).result

/** What a run printed, for assertion messages. */
export const describeRun = (run: CliRun): string =>
  `streambed ${run.args.join(' ')} → ${run.hung ? 'HUNG, killed' : run.code}\n` +
  `--- stdout ---\n${run.stdout}\n--- stderr ---\n${run.stderr}`

/** Expects exit 0 and returns the JSON value on stdout (a command run with --json). */
export const jsonOf = <T>(run: CliRun): T => {
  if (run.code !== 0) throw new Error(`expected exit 0: ${describeRun(run)}`)
  return JSON.parse(run.stdout) as T
}

/** The JSON after `label` on a line of stdout (`backup complete: {...}`). */
export const labelledJson = <T>(run: CliRun, label: string): T => {
  const line = run.stdout.split('\n').find((l) => l.startsWith(`${label}: `))
  if (line === undefined) throw new Error(`no "${label}:" line: ${describeRun(run)}`)
  return JSON.parse(line.slice(label.length + 2)) as T
}

/** The error line a failed command prints (`streambed: <message>`), without the prefix. */
export const errorOf = (run: CliRun): string => {
  const line = run.stderr.split('\n').find((l) => l.startsWith('streambed: '))
  if (line === undefined) throw new Error(`no error line: ${describeRun(run)}`)
  return line.slice('streambed: '.length)
}

/** Runs the `spawnNode` calls at once; if one fails, kills the others and throws its error. */
export const spawnAll = async (
  starts: readonly (() => Promise<SpawnedProcessNode>)[],
): Promise<SpawnedProcessNode[]> => {
  const settled = await Promise.allSettled(starts.map((start) => start()))
  const procs = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
  const failed = settled.find((r) => r.status === 'rejected')
  if (failed) {
    await Promise.all(procs.map((p) => p.crash()))
    throw failed.reason
  }
  return procs
}

/** A document's state as a fresh client would encode it: the bytes the drill compares. */
export const stateOf = (doc: Y.Doc): Uint8Array => {
  const fresh = new Y.Doc()
  try {
    Y.applyUpdate(fresh, Y.encodeStateAsUpdate(doc))
    return Y.encodeStateAsUpdate(fresh)
  } finally {
    fresh.destroy()
  }
}

export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  )

/** The close codes a client's socket gets from now on, in order (0: closed without a code). */
export const closeCodes = (client: TestClient): number[] => {
  const codes: number[] = []
  client.provider.on('connection-close', (event: unknown) =>
    codes.push((event as { code?: number } | null)?.code ?? 0),
  )
  return codes
}

/** The sum of a metric's samples (every label set) in a Prometheus text page. */
export const metricOf = async (httpUrl: string, name: string, labels = ''): Promise<number> => {
  const text = await (await fetch(`${httpUrl}/metrics`)).text()
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}${labels}`) && /[\s{]/.test(l.charAt(name.length)))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0)
}

export type LosableKind = 'fs' | 'postgres' | 's3'

/** A storage backend a test can lose, and where its backups go (outside that storage). */
export interface LosableStorage {
  readonly kind: LosableKind
  /** STORAGE and its settings. */
  readonly env: Record<string, string>
  /** A backup location on the same kind of service: a directory, or s3://<other bucket>/<prefix>/. */
  readonly backupDest: string
  /**
   * The disaster: fs empties the directory; postgres drops the schema (every table) and returns a
   * new empty schema's DATABASE_URL; s3 deletes every object under S3_PREFIX. Resolves with the
   * settings of the (empty) storage to restore into.
   */
  lose(): Promise<Record<string, string>>
  close(): Promise<void>
}

export const startLosableStorage = async (kind: LosableKind): Promise<LosableStorage> => {
  const backups = await mkdtemp(join(tmpdir(), 'streambed-backups-'))
  const cleanBackups = () => rm(backups, { recursive: true, force: true })
  switch (kind) {
    case 'fs': {
      const dir = await mkdtemp(join(tmpdir(), 'streambed-store-'))
      return {
        kind,
        env: { STORAGE: 'fs', STORAGE_DIR: dir },
        backupDest: join(backups, 'backup'),
        lose: async () => {
          await rm(join(dir, 'v1'), { recursive: true, force: true })
          return { STORAGE: 'fs', STORAGE_DIR: dir }
        },
        close: async () => {
          await rm(dir, { recursive: true, force: true })
          await cleanBackups()
        },
      }
    }
    case 'postgres': {
      const dbs: TestDatabase[] = [await testDatabase(undefined, 'drill')]
      return {
        kind,
        env: { STORAGE: 'postgres', DATABASE_URL: dbs[0]!.url },
        backupDest: join(backups, 'backup'),
        lose: async () => {
          await dbs.at(-1)!.close()
          const fresh = await testDatabase(undefined, 'restored')
          dbs.push(fresh)
          return { STORAGE: 'postgres', DATABASE_URL: fresh.url }
        },
        close: async () => {
          for (const db of dbs) await db.close()
          await cleanBackups()
        },
      }
    }
    case 's3': {
      const s3 = await startS3Server()
      const bucket = await s3.createBucket('store')
      const backupBucket = await s3.createBucket('backups')
      const env = {
        STORAGE: 's3',
        S3_ENDPOINT: s3.endpoint,
        S3_BUCKET: bucket,
        S3_PREFIX: 'deployment/',
        S3_REGION: s3.region,
        S3_ACCESS_KEY_ID: s3.accessKeyId,
        S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
        S3_FORCE_PATH_STYLE: 'true',
      }
      return {
        kind,
        env,
        backupDest: `s3://${backupBucket}/drill/`,
        lose: async () => {
          await using whole = openBackupTarget(`s3://${bucket}/`, { s3: s3ClientOptions(s3) })
          await whole.removeAll(env.S3_PREFIX)
          const left = await whole.list()
          if (left.length > 0) throw new Error(`objects left in ${bucket}: ${left[0]?.path}`)
          return env
        },
        close: async () => {
          await s3.close()
          await cleanBackups()
        },
      }
    }
  }
}
