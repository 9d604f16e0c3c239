import type { Logger } from './logger.js'

export interface Loop {
  /** Stops the loop and resolves once the iteration in progress (if any) has finished. */
  stop(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

export interface RunLoopOptions {
  name: string
  logger: Logger
  /** Pause between successful iterations; default 0 (the iteration itself blocks, e.g. XREADGROUP). */
  intervalMs?: number
  /** First pause after a failure; doubles up to `maxBackoffMs`. Default 100. */
  minBackoffMs?: number
  /** Default 5000. */
  maxBackoffMs?: number
}

/**
 * Runs `iteration` until stopped: every background loop goes through here so that each one logs its
 * failures, backs off exponentially instead of spinning, and can be stopped and awaited.
 * `iteration` receives an AbortSignal that fires on stop.
 */
export const runLoop = (
  iteration: (signal: AbortSignal) => Promise<void>,
  opts: RunLoopOptions,
): Loop => {
  const controller = new AbortController()
  const minBackoffMs = opts.minBackoffMs ?? 100
  const maxBackoffMs = opts.maxBackoffMs ?? 5000
  let backoffMs = minBackoffMs
  const done = (async () => {
    while (!controller.signal.aborted) {
      try {
        await iteration(controller.signal)
        backoffMs = minBackoffMs
        if (opts.intervalMs) await sleep(opts.intervalMs, controller.signal)
      } catch (err) {
        if (controller.signal.aborted) break
        opts.logger.warn({ err, loop: opts.name, retryInMs: backoffMs }, 'background loop failed')
        await sleep(backoffMs, controller.signal)
        backoffMs = Math.min(backoffMs * 2, maxBackoffMs)
      }
    }
  })()
  const stop = async () => {
    controller.abort()
    await done
  }
  return { stop, [Symbol.asyncDispose]: stop }
}

/** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })

/**
 * Calls `onSignal` once on the first SIGINT/SIGTERM; a second signal exits at once.
 * Returns a function that removes the handlers.
 */
export const onShutdownSignal = (onSignal: (signal: NodeJS.Signals) => void): (() => void) => {
  let received = false
  const handler = (signal: NodeJS.Signals) => {
    if (received) process.exit(130)
    received = true
    onSignal(signal)
  }
  process.on('SIGINT', handler)
  process.on('SIGTERM', handler)
  return () => {
    process.off('SIGINT', handler)
    process.off('SIGTERM', handler)
  }
}
