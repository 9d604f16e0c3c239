import { describe, it, expect } from 'vitest'
import { z } from 'zod'
import { AppError } from './errors.js'
import {
  type Env,
  envBool,
  envBytes,
  envDuration,
  envHostPorts,
  envEnum,
  envInt,
  envOptional,
  envString,
  envUrl,
  parseDuration,
  parseEnv,
} from './env.js'

/** The problem lines of the AppError('CONFIG') that parsing `env` throws. */
const problemsOf = (schema: z.ZodType, env: Env): string[] => {
  let thrown: unknown
  try {
    parseEnv(schema, env)
  } catch (err) {
    thrown = err
  }
  expect(thrown).toBeInstanceOf(AppError)
  const err = thrown as AppError
  expect(err.code).toBe('CONFIG')
  const [title, ...lines] = err.message.split('\n')
  expect(title).toBe('Invalid configuration:')
  expect(err.details).toEqual({ problems: lines.length })
  return lines
}

/** Parses a single variable `X` with `field`. */
const one = <T extends z.ZodType>(field: T, value: string | undefined): z.output<T> =>
  (parseEnv(z.object({ X: field }), { X: value }) as { X: z.output<T> }).X

const problemOf = (field: z.ZodType, value: string | undefined): string[] =>
  problemsOf(z.object({ X: field }), { X: value })

describe('envInt', () => {
  it('parses integers, trimming whitespace', () => {
    expect(one(envInt(), '42')).toBe(42)
    expect(one(envInt(), ' 7 ')).toBe(7)
    expect(one(envInt(), '-5')).toBe(-5)
    expect(one(envInt(), '0')).toBe(0)
  })

  it('accepts the bounds themselves', () => {
    expect(one(envInt({ min: 1, max: 10 }), '1')).toBe(1)
    expect(one(envInt({ min: 1, max: 10 }), '10')).toBe(10)
  })

  it.each(['4.5', '1e3', '0x10', 'ten', '12abc', '99999999999999999999'])(
    'rejects %j naming the form and the value',
    (bad) => {
      expect(problemOf(envInt(), bad)).toEqual([
        `  X: expected an integer, got ${JSON.stringify(bad)}`,
      ])
    },
  )

  it('rejects values out of range, naming the range', () => {
    expect(problemOf(envInt({ min: 1, max: 10 }), '11')).toEqual([
      '  X: expected an integer 1..10, got "11"',
    ])
    expect(problemOf(envInt({ min: 1, max: 10 }), '0')).toEqual([
      '  X: expected an integer 1..10, got "0"',
    ])
    expect(problemOf(envInt({ min: 100 }), '99')).toEqual([
      '  X: expected an integer >= 100, got "99"',
    ])
  })

  it('names the maximum when only max is set', () => {
    expect(problemOf(envInt({ max: 10 }), '11')).toEqual([
      expect.stringMatching(/^ {2}X: expected an integer .*10.*, got "11"$/),
    ])
  })

  it('uses the default when unset, empty or blank', () => {
    expect(one(envInt({ default: 5 }), undefined)).toBe(5)
    expect(one(envInt({ default: 5 }), '')).toBe(5)
    expect(one(envInt({ default: 5 }), '   ')).toBe(5)
  })

  it('is required without a default', () => {
    expect(problemOf(envInt({ min: 1, max: 9 }), undefined)).toEqual([
      '  X: is required; expected an integer 1..9',
    ])
    expect(problemOf(envInt(), '')).toEqual(['  X: is required; expected an integer'])
  })
})

describe('envBytes', () => {
  it.each([
    ['1048576', 1048576],
    ['0', 0],
    ['10b', 10],
    ['2kb', 2000],
    ['512KiB', 512 * 1024],
    ['1.5KiB', 1536],
    ['16MiB', 16 * 1024 * 1024],
    ['16 MiB', 16 * 1024 * 1024],
    ['16mib', 16 * 1024 * 1024],
    ['3MB', 3_000_000],
    ['1GB', 1_000_000_000],
    ['2GiB', 2 * 1024 ** 3],
  ])('parses %j as %d bytes', (raw, bytes) => {
    expect(one(envBytes(), raw)).toBe(bytes)
  })

  it.each(['16XB', '-1', 'MiB', '1,5KiB', '16 Mi B', 'lots'])('rejects %j', (bad) => {
    expect(problemOf(envBytes(), bad)).toEqual([
      `  X: expected a size in bytes like 65536, 512KiB or 16MiB, got ${JSON.stringify(bad)}`,
    ])
  })

  it('rejects sizes outside min/max, naming the bounds', () => {
    const field = envBytes({ min: 1024, max: 1024 ** 2 })
    expect(one(field, '1KiB')).toBe(1024)
    expect(one(field, '1MiB')).toBe(1024 ** 2)
    const form = 'a size in bytes like 65536, 512KiB or 16MiB (>= 1024) (<= 1048576)'
    expect(problemOf(field, '1000')).toEqual([`  X: expected ${form}, got "1000"`])
    expect(problemOf(field, '2MiB')).toEqual([`  X: expected ${form}, got "2MiB"`])
  })

  it('uses the default when unset or empty', () => {
    expect(one(envBytes({ default: 4096 }), undefined)).toBe(4096)
    expect(one(envBytes({ default: 4096 }), '')).toBe(4096)
  })
})

describe('envBool', () => {
  it.each(['true', 'TRUE', '1', 'yes', 'Yes', 'on'])('parses %j as true', (raw) => {
    expect(one(envBool(), raw)).toBe(true)
  })

  it.each(['false', 'False', '0', 'no', 'off', 'OFF'])('parses %j as false', (raw) => {
    expect(one(envBool(), raw)).toBe(false)
  })

  it.each(['maybe', '2', 'y', 'enabled'])('rejects %j', (bad) => {
    expect(problemOf(envBool(), bad)).toEqual([
      `  X: expected true or false (also 1/0, yes/no), got ${JSON.stringify(bad)}`,
    ])
  })

  it('uses the default when unset or empty, also a false default', () => {
    expect(one(envBool({ default: true }), undefined)).toBe(true)
    expect(one(envBool({ default: false }), '')).toBe(false)
  })
})

describe('envEnum', () => {
  const levels = ['info', 'debug', 'trace'] as const

  it('accepts each value', () => {
    for (const level of levels) expect(one(envEnum(levels), level)).toBe(level)
  })

  it('rejects other values, case-sensitively, listing the choices', () => {
    for (const bad of ['DEBUG', 'warn']) {
      expect(problemOf(envEnum(levels), bad)).toEqual([
        `  X: expected one of info | debug | trace, got ${JSON.stringify(bad)}`,
      ])
    }
  })

  it('uses the default when unset', () => {
    expect(one(envEnum(levels, { default: 'debug' }), undefined)).toBe('debug')
    expect(problemOf(envEnum(levels), undefined)).toEqual([
      '  X: is required; expected one of info | debug | trace',
    ])
  })
})

describe('envUrl', () => {
  const redisUrl = envUrl({ protocols: ['redis:', 'rediss:'], example: 'redis://host:6379' })

  it('accepts URLs with an allowed protocol, as written', () => {
    expect(one(redisUrl, 'redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379')
    expect(one(redisUrl, 'rediss://user:pass@host:6380/0')).toBe('rediss://user:pass@host:6380/0')
  })

  it.each(['http://127.0.0.1:6379', 'not a url', '127.0.0.1:6379', 'redis//host'])(
    'rejects %j with the example',
    (bad) => {
      expect(problemOf(redisUrl, bad)).toEqual([
        `  X: expected a URL like redis://host:6379, got ${JSON.stringify(bad)}`,
      ])
    },
  )

  it('uses the default when unset', () => {
    const field = envUrl({ protocols: ['redis:'], example: 'redis://h', default: 'redis://d:1' })
    expect(one(field, undefined)).toBe('redis://d:1')
  })
})

describe('envString', () => {
  it('accepts any string without a pattern, trimmed', () => {
    expect(one(envString(), '  hello world ')).toBe('hello world')
  })

  it('checks the pattern, naming it', () => {
    const field = envString({ pattern: /^[a-z]+$/ })
    expect(one(field, 'abc')).toBe('abc')
    expect(problemOf(field, 'ABC')).toEqual([
      '  X: expected a string matching /^[a-z]+$/, got "ABC"',
    ])
  })

  it('uses the given form in the message instead of the pattern', () => {
    const field = envString({ pattern: /^[a-z]+$/, form: 'lower-case letters' })
    expect(problemOf(field, 'a1')).toEqual(['  X: expected lower-case letters, got "a1"'])
  })

  it('uses a string default when unset or empty', () => {
    expect(one(envString({ default: 'd' }), undefined)).toBe('d')
    expect(one(envString({ default: 'd' }), '')).toBe('d')
    expect(problemOf(envString(), undefined)).toEqual(['  X: is required; expected a string'])
  })

  it('evaluates a function default on each parse', () => {
    let calls = 0
    const schema = z.object({ X: envString({ default: () => `id-${++calls}` }) })
    expect(parseEnv(schema, {}).X).toBe('id-1')
    expect(parseEnv(schema, {}).X).toBe('id-2')
    expect(parseEnv(schema, { X: 'given' }).X).toBe('given')
    expect(calls).toBe(2)
  })
})

describe('envOptional', () => {
  it('is undefined when unset, empty or blank', () => {
    expect(one(envOptional(), undefined)).toBeUndefined()
    expect(one(envOptional(), '')).toBeUndefined()
    expect(one(envOptional(), '  ')).toBeUndefined()
  })

  it('returns the trimmed value', () => {
    expect(one(envOptional(), ' secret ')).toBe('secret')
  })

  it('checks the pattern, naming the form or else the pattern', () => {
    expect(one(envOptional({ pattern: /^https:/ }), 'https://x')).toBe('https://x')
    expect(
      problemOf(envOptional({ pattern: /^https:/, form: 'an https URL' }), 'http://x'),
    ).toEqual(['  X: expected an https URL, got "http://x"'])
    expect(problemOf(envOptional({ pattern: /^https:/ }), 'ftp://x')).toEqual([
      '  X: expected /^https:/, got "ftp://x"',
    ])
  })
})

describe('envHostPorts', () => {
  it('is undefined when unset or blank', () => {
    expect(one(envHostPorts(), undefined)).toBeUndefined()
    expect(one(envHostPorts(), ' ')).toBeUndefined()
  })

  it('parses a comma-separated list, tolerating spaces', () => {
    expect(one(envHostPorts(), '10.0.0.1:7000, redis-b:7001 ,c.example:1')).toEqual([
      { host: '10.0.0.1', port: 7000 },
      { host: 'redis-b', port: 7001 },
      { host: 'c.example', port: 1 },
    ])
  })

  it('parses bracketed IPv6 hosts without the brackets', () => {
    expect(one(envHostPorts(), '[::1]:7000,[fd00::2]:65535')).toEqual([
      { host: '::1', port: 7000 },
      { host: 'fd00::2', port: 65535 },
    ])
  })

  it.each([
    'redis-a',
    'a:0',
    'a:65536',
    'a:123456',
    'a:1,',
    'a:1,,b:2',
    ':7000',
    'a b:1',
    '::1:7000',
  ])('rejects %j, quoting the whole value', (bad) => {
    expect(problemOf(envHostPorts(), bad)).toEqual([
      `  X: expected a comma-separated list of host:port like 10.0.0.1:7000,10.0.0.2:7000, got ${JSON.stringify(bad)}`,
    ])
  })
})


describe('parseEnv', () => {
  const schema = z.object({
    PORT: envInt({ default: 8080, min: 0, max: 65535 }),
    SIZE: envBytes({ default: 1024 }),
    DEBUG: envBool({ default: false }),
    LEVEL: envEnum(['info', 'debug'], { default: 'info' }),
    URL: envUrl({ protocols: ['redis:'], example: 'redis://h:1', default: 'redis://h:1' }),
    NAME: envString({ pattern: /^[a-z]+$/ }),
    TOKEN: envOptional({ pattern: /^t-/, form: 't-<token>' }),
  })

  it('returns the typed values, with defaults for unset and empty variables', () => {
    expect(parseEnv(schema, { NAME: 'node', SIZE: '' })).toEqual({
      PORT: 8080,
      SIZE: 1024,
      DEBUG: false,
      LEVEL: 'info',
      URL: 'redis://h:1',
      NAME: 'node',
      TOKEN: undefined,
    })
  })

  it('ignores variables the schema does not name', () => {
    expect(parseEnv(schema, { NAME: 'x', PATH: '/usr/bin', HOME: '/root' })).toMatchObject({
      NAME: 'x',
    })
  })

  it('reports all problems at once, each naming the variable, the form and the bad value', () => {
    const lines = problemsOf(schema, {
      PORT: 'eighty',
      SIZE: '1 parsec',
      DEBUG: 'sometimes',
      LEVEL: 'loud',
      URL: 'http://h',
      TOKEN: 'abc',
      // NAME is missing
    })
    expect(lines).toEqual([
      '  PORT: expected an integer 0..65535, got "eighty"',
      '  SIZE: expected a size in bytes like 65536, 512KiB or 16MiB, got "1 parsec"',
      '  DEBUG: expected true or false (also 1/0, yes/no), got "sometimes"',
      '  LEVEL: expected one of info | debug, got "loud"',
      '  URL: expected a URL like redis://h:1, got "http://h"',
      '  NAME: is required; expected a string matching /^[a-z]+$/',
      '  TOKEN: expected t-<token>, got "abc"',
    ])
  })

  it('labels problems without a variable as "configuration"', () => {
    const refined = z
      .object({ A: envInt({ default: 1 }), B: envInt({ default: 2 }) })
      .superRefine((c, ctx) => {
        if (c.A > c.B) ctx.addIssue({ code: 'custom', message: 'A must not exceed B' })
      })
    expect(parseEnv(refined, { A: '1', B: '2' })).toEqual({ A: 1, B: 2 })
    expect(problemsOf(refined, { A: '3' })).toEqual(['  configuration: A must not exceed B'])
  })
})

describe('envDuration', () => {
  it('reads a duration in ms with its default, and names the expected form', () => {
    expect(one(envDuration({ default: 1000 }), undefined)).toBe(1000)
    expect(one(envDuration(), '2h')).toBe(7_200_000)
    expect(problemOf(envDuration({ min: 1000 }), '5')).toEqual([
      '  X: expected a duration like 90s, 30m, 24h or 7d (>= 1000 ms), got "5"',
    ])
  })
})

describe('parseDuration', () => {
  it('reads durations with a unit, and plain milliseconds', () => {
    expect(parseDuration('500ms')).toBe(500)
    expect(parseDuration('90s')).toBe(90_000)
    expect(parseDuration('30m')).toBe(1_800_000)
    expect(parseDuration('24h')).toBe(86_400_000)
    expect(parseDuration('1.5d')).toBe(129_600_000)
    expect(parseDuration('250')).toBe(250)
  })

  it.each(['', 'h', '-5m', '5 minutes', '3w'])('rejects %j', (raw) => {
    expect(parseDuration(raw)).toBeUndefined()
  })
})
