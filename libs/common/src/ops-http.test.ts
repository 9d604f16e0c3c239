import { describe, expect, it } from 'vitest'
import { answerOps, type OpsEndpoints } from './ops-http.js'

const ops = (over: Partial<OpsEndpoints> = {}): OpsEndpoints => ({
  readiness: () => ({ ready: true, details: { connections: 3 } }),
  metrics: async () => ({ contentType: 'text/plain; version=0.0.4', text: 'up 1\n' }),
  ...over,
})

describe('answerOps', () => {
  it('answers /healthz, /readyz with details, /metrics with its content type', async () => {
    expect(await answerOps('GET', '/healthz', ops())).toEqual({
      status: 200,
      contentType: 'application/json',
      body: '{"status":"ok"}',
    })
    const ready = await answerOps('get', '/readyz', ops())
    expect(ready?.status).toBe(200)
    expect(JSON.parse(ready?.body ?? '')).toEqual({ status: 'ready', connections: 3 })
    expect(await answerOps('GET', '/metrics', ops())).toEqual({
      status: 200,
      contentType: 'text/plain; version=0.0.4',
      body: 'up 1\n',
    })
  })

  it('is 503 with the reason when not ready, also when readiness throws', async () => {
    const notReady = await answerOps(
      'GET',
      '/readyz',
      ops({ readiness: () => ({ ready: false, reason: 'redis connecting' }) }),
    )
    expect(notReady?.status).toBe(503)
    expect(JSON.parse(notReady?.body ?? '')).toEqual({
      status: 'not ready',
      reason: 'redis connecting',
    })
    const threw = await answerOps(
      'GET',
      '/readyz',
      ops({ readiness: () => Promise.reject(new Error('storage down')) }),
    )
    expect(threw?.status).toBe(503)
    expect(JSON.parse(threw?.body ?? '')).toMatchObject({ reason: 'storage down' })
  })

  it('without full access refuses /metrics and shows /readyz without details', async () => {
    expect((await answerOps('GET', '/metrics', ops(), { full: false }))?.status).toBe(401)
    const ready = await answerOps('GET', '/readyz', ops(), { full: false })
    expect(JSON.parse(ready?.body ?? '')).toEqual({ status: 'ready' })
  })

  it('is 500 when metrics fail, and null for other paths and methods', async () => {
    const failed = await answerOps(
      'GET',
      '/metrics',
      ops({ metrics: () => Promise.reject(new Error('collector broke')) }),
    )
    expect(failed?.status).toBe(500)
    expect(await answerOps('GET', '/docs/a', ops())).toBeNull()
    expect(await answerOps('POST', '/healthz', ops())).toBeNull()
  })
})
