import { pino, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

export interface LoggerOptions {
  /** pino level; default `info`. */
  level?: LevelWithSilent
  /** Fields added to every line, e.g. `{ process: 'server', nodeId }`. */
  base?: Record<string, unknown>
  /** Where lines go; default stdout. Tests pass a stream to capture lines. */
  destination?: NodeJS.WritableStream
}

/**
 * Library errors can carry whole connection objects (pg attaches the pool's `client`, the AWS SDK
 * its raw `$response`): a log line keeps the error's own fields, not kilobytes of client state.
 */
const HEAVY_FIELDS = ['client', 'connection', 'socket', '$response']

const serializeErr = (err: Error): pino.SerializedError => {
  const out = pino.stdSerializers.errWithCause(err)
  for (const key of HEAVY_FIELDS) delete out[key]
  return out
}

export const createLogger = (opts: LoggerOptions = {}): Logger =>
  pino(
    {
      level: opts.level ?? 'info',
      base: opts.base ?? {},
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: serializeErr },
    },
    opts.destination ?? pino.destination({ sync: false }),
  )

/** A logger that discards everything (for libraries used without a logger). */
export const silentLogger = (): Logger => pino({ level: 'silent' })
