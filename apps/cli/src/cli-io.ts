import { AppError, describeError, type Logger } from '@streambed/common'

/** Writes the error of a failed command in one line and exits with its code (error catalogue). */
export const fail = (err: unknown, logger?: Logger): never => {
  const d = describeError(err)
  if (logger && d.code === 'INTERNAL') logger.fatal({ err }, 'fatal error')
  const text = d.expose
    ? d.message
    : `internal error: ${err instanceof Error ? err.stack : String(err)}`
  process.stderr.write(`streambed: ${text}\n`)
  process.exit(d.exitCode || 1)
}

/** A usage error (exit 64 is EX_USAGE; CONFIG's 78 is kept for configuration). */
export const usageError = (message: string, usage: string): AppError =>
  new AppError('CONFIG', `${message}\n\n${usage}`)

/** Prints a result as JSON (`--json`) or as `lines` for people. */
export const output = (json: boolean, value: unknown, lines: () => string[]): void => {
  process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${lines().join('\n')}\n`)
}
