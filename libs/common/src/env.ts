import { hostname } from 'node:os'
import { z } from 'zod'
import { AppError } from './errors.js'

/**
 * Building blocks for `parseConfig(env)` functions: each variable is parsed from its raw string with
 * a human description of the expected form, so every error names the variable, the form and the
 * value it got, and all problems are reported together.
 */
export type Env = Readonly<Record<string, string | undefined>>

const fieldOf = <T>(form: string, parse: (raw: string) => T | undefined, fallback?: () => T) =>
  z
    .string()
    .optional()
    .transform((raw, ctx): T => {
      const value = raw?.trim()
      if (value === undefined || value === '') {
        if (fallback) return fallback()
        ctx.addIssue({ code: 'custom', message: `is required; expected ${form}` })
        return z.NEVER
      }
      const parsed = parse(value)
      if (parsed === undefined) {
        ctx.addIssue({ code: 'custom', message: `expected ${form}, got ${JSON.stringify(raw)}` })
        return z.NEVER
      }
      return parsed
    })

const withDefault = <T>(d: T | undefined) => (d === undefined ? undefined : () => d)

/** `default` may be a function, evaluated on each parse (e.g. a random id). */
export const envString = (
  opts: { default?: string | (() => string); pattern?: RegExp; form?: string } = {},
) =>
  fieldOf(
    opts.form ?? (opts.pattern ? `a string matching ${String(opts.pattern)}` : 'a string'),
    (raw) => (opts.pattern && !opts.pattern.test(raw) ? undefined : raw),
    typeof opts.default === 'function' ? opts.default : withDefault(opts.default),
  )

/** An optional string: `undefined` when unset or empty. */
export const envOptional = (opts: { pattern?: RegExp; form?: string } = {}) =>
  z
    .string()
    .optional()
    .transform((raw, ctx): string | undefined => {
      const value = raw?.trim()
      if (!value) return undefined
      if (opts.pattern && !opts.pattern.test(value)) {
        ctx.addIssue({
          code: 'custom',
          message: `expected ${opts.form ?? String(opts.pattern)}, got ${JSON.stringify(raw)}`,
        })
        return z.NEVER
      }
      return value
    })

export const envInt = (opts: { default?: number; min?: number; max?: number } = {}) => {
  const min = opts.min ?? Number.MIN_SAFE_INTEGER
  const max = opts.max ?? Number.MAX_SAFE_INTEGER
  const range =
    opts.min !== undefined && opts.max !== undefined
      ? ` ${min}..${max}`
      : opts.min !== undefined
        ? ` >= ${min}`
        : opts.max !== undefined
          ? ` <= ${max}`
          : ''
  return fieldOf(
    `an integer${range}`,
    (raw) => {
      if (!/^-?\d+$/.test(raw)) return undefined
      const n = Number(raw)
      return Number.isSafeInteger(n) && n >= min && n <= max ? n : undefined
    },
    withDefault(opts.default),
  )
}

const sizeUnits: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  kib: 1024,
  mb: 1e6,
  mib: 1024 ** 2,
  gb: 1e9,
  gib: 1024 ** 3,
}

/** A size in bytes: `1048576`, `512KiB`, `16MiB`, `1GB`. */
export const envBytes = (opts: { default?: number; min?: number; max?: number } = {}) =>
  fieldOf(
    `a size in bytes like 65536, 512KiB or 16MiB${opts.min !== undefined ? ` (>= ${opts.min})` : ''}${opts.max !== undefined ? ` (<= ${opts.max})` : ''}`,
    (raw) => {
      const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(raw)
      const unit = sizeUnits[(m?.[2] ?? '').toLowerCase()]
      if (!m || unit === undefined) return undefined
      const n = Math.round(Number(m[1]) * unit)
      if (opts.min !== undefined && n < opts.min) return undefined
      if (opts.max !== undefined && n > opts.max) return undefined
      return n
    },
    withDefault(opts.default),
  )

/** A duration (`90s`, `30m`, `24h`, `7d` or ms) in ms; see parseDuration. */
export const envDuration = (opts: { default?: number; min?: number } = {}) =>
  fieldOf(
    `a duration like 90s, 30m, 24h or 7d${opts.min !== undefined ? ` (>= ${opts.min} ms)` : ''}`,
    (raw) => {
      const ms = parseDuration(raw)
      return ms === undefined || (opts.min !== undefined && ms < opts.min) ? undefined : ms
    },
    withDefault(opts.default),
  )

export const envBool = (opts: { default?: boolean } = {}) =>
  fieldOf(
    'true or false (also 1/0, yes/no)',
    (raw) => {
      const v = raw.toLowerCase()
      if (['1', 'true', 'yes', 'on'].includes(v)) return true
      if (['0', 'false', 'no', 'off'].includes(v)) return false
      return undefined
    },
    withDefault(opts.default),
  )

export const envEnum = <const T extends readonly [string, ...string[]]>(
  values: T,
  opts: { default?: T[number] } = {},
) =>
  fieldOf(
    `one of ${values.join(' | ')}`,
    (raw) => ((values as readonly string[]).includes(raw) ? (raw as T[number]) : undefined),
    withDefault(opts.default),
  )

/** A URL with one of the given protocols, e.g. `['redis:', 'rediss:']`. */
export const envUrl = (opts: { protocols: readonly string[]; default?: string; example: string }) =>
  fieldOf(
    `a URL like ${opts.example}`,
    (raw) => {
      try {
        const url = new URL(raw)
        return opts.protocols.includes(url.protocol) ? raw : undefined
      } catch {
        // not a URL at all: reported as an issue by fieldOf
        return undefined
      }
    },
    withDefault(opts.default),
  )

/** Comma-separated `host:port` list. */
export const envHostPorts = () =>
  z
    .string()
    .optional()
    .transform((raw, ctx): { host: string; port: number }[] | undefined => {
      if (!raw?.trim()) return undefined
      const out: { host: string; port: number }[] = []
      for (const part of raw.split(',')) {
        const m = /^\s*([^\s:]+|\[[^\]]+\]):(\d{1,5})\s*$/.exec(part)
        const port = Number(m?.[2])
        if (!m?.[1] || port < 1 || port > 65535) {
          ctx.addIssue({
            code: 'custom',
            message: `expected a comma-separated list of host:port like 10.0.0.1:7000,10.0.0.2:7000, got ${JSON.stringify(raw)}`,
          })
          return z.NEVER
        }
        out.push({ host: m[1].replace(/^\[|\]$/g, ''), port })
      }
      return out
    })


/**
 * Parses `env` with `schema` and throws one `AppError('CONFIG')` listing every problem, each
 * prefixed with the variable name.
 */
export const parseEnv = <S extends z.ZodType>(schema: S, env: Env): z.output<S> => {
  const result = schema.safeParse(env)
  if (result.success) return result.data
  const lines = result.error.issues.map((issue) => {
    const name = issue.path.length > 0 ? issue.path.join('.') : 'configuration'
    return `  ${name}: ${issue.message}`
  })
  throw new AppError('CONFIG', `Invalid configuration:\n${lines.join('\n')}`, {
    details: { problems: lines.length },
  })
}

/** A default process id: the host name made safe, a tag and a random suffix (unique per parse). */
export const defaultProcessId = (tag = ''): string =>
  `${hostname()
    .replace(/[^A-Za-z0-9_.-]/g, '-')
    .slice(0, 40)}-${tag}${Math.random().toString(36).slice(2, 8)}`

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
}

/** `500ms`, `90s`, `30m`, `24h`, `7d` or plain milliseconds, in ms; undefined when malformed. */
export const parseDuration = (raw: string): number | undefined => {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(raw.trim())
  if (!m) return undefined
  return Math.round(Number(m[1]) * (DURATION_UNITS[m[2] ?? 'ms'] ?? 1))
}
