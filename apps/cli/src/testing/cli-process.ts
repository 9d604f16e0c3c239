/**
 * Test helper (not built): `streambed server | worker` as a child process on the address the test
 * chooses (a load balancer's server list names fixed ports), waiting as long as the start takes.
 */
import { startProcess, type ManagedProcess } from '@streambed/testing'
import { cliArgs, cliDir } from './nodes.js'

/**
 * SIGKILLs `proc` if the test process exits first (a test that timed out never reaches its
 * cleanup, and a child left behind keeps its port and burns the shared cores).
 */
export const killOnExit = (proc: ManagedProcess): void => {
  const kill = () => proc.child.kill('SIGKILL')
  process.once('exit', kill)
  void proc.exited.then(() => process.off('exit', kill))
}

/**
 * Starts `streambed <command>` (TypeScript source through tsx) with `env` added to a minimal
 * environment (REDIS_URL and REDIS_PREFIX needed; AUTH_MODE none, LOG_LEVEL info, HOST 127.0.0.1
 * unless given) and resolves once it logged that it listens. Loading the sources is most of a
 * start and takes many seconds on shared, busy cores: `startTimeoutMs` allows for that. A process
 * that did not start in time is killed.
 */
export const startCliProcess = async (
  command: 'server' | 'worker',
  env: Record<string, string>,
  startTimeoutMs = 60_000,
): Promise<ManagedProcess> => {
  const proc = startProcess(process.execPath, cliArgs(command), {
    cwd: cliDir,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      AUTH_MODE: 'none',
      ...env,
    },
  })
  killOnExit(proc)
  const listening = command === 'worker' ? /"msg":"worker started"/ : /server node listening/
  try {
    await proc.waitForLine(listening, startTimeoutMs)
  } catch (err) {
    await proc.kill('SIGKILL')
    throw err
  }
  return proc
}
