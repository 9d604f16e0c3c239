import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'

export interface ManagedProcess {
  readonly child: ChildProcess
  /** stdout and stderr lines so far. */
  readonly output: string[]
  /** Resolves with the exit code (or signal) once the process ended. */
  readonly exited: Promise<number | string>
  /** Resolves with the first output line matching `pattern`; rejects on exit or timeout. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>
  kill(signal?: NodeJS.Signals): Promise<number | string>
}

export const startProcess = (
  command: string,
  args: readonly string[],
  options: SpawnOptions = {},
): ManagedProcess => {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options })
  const output: string[] = []
  const waiters = new Set<{ pattern: RegExp; resolve: (line: string) => void }>()
  const onData = (chunk: Buffer, partial: { rest: string }) => {
    const text = partial.rest + chunk.toString()
    const lines = text.split('\n')
    partial.rest = lines.pop() ?? ''
    for (const line of lines) {
      output.push(line)
      for (const w of waiters) {
        if (w.pattern.test(line)) {
          waiters.delete(w)
          w.resolve(line)
        }
      }
    }
  }
  const outRest = { rest: '' }
  const errRest = { rest: '' }
  child.stdout?.on('data', (c: Buffer) => onData(c, outRest))
  child.stderr?.on('data', (c: Buffer) => onData(c, errRest))
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'))
  })
  const describe = () =>
    `${command} ${args.join(' ')}\n--- output ---\n${output.slice(-40).join('\n')}`
  return {
    child,
    output,
    exited,
    waitForLine: (pattern, timeoutMs = 20_000) => {
      const seen = output.find((l) => pattern.test(l))
      if (seen) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const waiter = { pattern, resolve }
        waiters.add(waiter)
        const timer = setTimeout(() => {
          waiters.delete(waiter)
          reject(
            new Error(
              `timed out after ${timeoutMs} ms waiting for ${String(pattern)} from ${describe()}`,
            ),
          )
        }, timeoutMs)
        void exited.then((code) => {
          clearTimeout(timer)
          if (waiters.delete(waiter))
            reject(
              new Error(
                `process exited (${code}) before printing ${String(pattern)}: ${describe()}`,
              ),
            )
        })
        const done = waiter.resolve
        waiter.resolve = (line) => {
          clearTimeout(timer)
          done(line)
        }
      })
    },
    kill: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    },
  }
}

/**
 * SIGKILLs `proc` if the test process exits first (a test that timed out never reaches its
 * cleanup, and a child left behind keeps its port and burns the shared cores).
 */
export const killOnExit = (proc: ManagedProcess): void => {
  const kill = () => proc.child.kill('SIGKILL')
  process.once('exit', kill)
  void proc.exited.then(() => process.off('exit', kill))
}
