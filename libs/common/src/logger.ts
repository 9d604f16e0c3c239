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

export const createLogger = (opts: LoggerOptions = {}): Logger =>
  pino(
    {
      level: opts.level ?? 'info',
      base: opts.base ?? {},
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.errWithCause },
    },
    opts.destination ?? pino.destination({ sync: false }),
  )

/** A logger that discards everything (for libraries used without a logger). */
export const silentLogger = (): Logger => pino({ level: 'silent' })
