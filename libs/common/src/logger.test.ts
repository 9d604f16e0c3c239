import { PassThrough } from 'node:stream'
import { expect, it } from 'vitest'
import { createLogger } from './logger.js'

const logLine = async (fields: Record<string, unknown>): Promise<Record<string, unknown>> => {
  const out = new PassThrough()
  const chunks: Buffer[] = []
  out.on('data', (c: Buffer) => chunks.push(c))
  const logger = createLogger({ destination: out })
  logger.warn(fields, 'x')
  await new Promise((r) => setImmediate(r))
  return JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>
}

it('logs an error with its message, code and cause but without the client object it carries', async () => {
  const cause = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
  const err = Object.assign(new Error('terminating connection', { cause }), {
    code: '57P01',
    client: { connectionParameters: { password: 'secret' }, huge: 'x'.repeat(10_000) },
  })
  const line = await logLine({ err })
  const logged = line.err as Record<string, unknown>
  expect(logged.message).toContain('terminating connection')
  expect(logged.code).toBe('57P01')
  expect(JSON.stringify(logged)).toContain('ECONNREFUSED')
  expect(logged.client).toBeUndefined()
  expect(JSON.stringify(line).length).toBeLessThan(2000)
})
