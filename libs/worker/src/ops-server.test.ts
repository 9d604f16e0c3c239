import { describe, expect, it } from 'vitest'
import { type OpsEndpoints, silentLogger } from '@streambed/common'
import { startOpsServer } from './ops-server.js'

const serve = (ops: OpsEndpoints) =>
  startOpsServer({ host: '127.0.0.1', port: 0, logger: silentLogger(), ops })

describe('startOpsServer', () => {
  it('serves the operations endpoints and answers 404 JSON for anything else', async () => {
    await using server = await serve({
      readiness: () => ({ ready: true, details: { activeTasks: 2 } }),
      metrics: async () => ({ contentType: 'text/plain; version=0.0.4', text: 'up 1\n' }),
    })
    expect(server.port).toBeGreaterThan(0)
    const url = `http://127.0.0.1:${server.port}`
    const health = await fetch(`${url}/healthz`)
    expect([health.status, await health.json()]).toEqual([200, { status: 'ok' }])
    const ready = await fetch(`${url}/readyz`)
    expect([ready.status, await ready.json()]).toEqual([200, { status: 'ready', activeTasks: 2 }])
    const metrics = await fetch(`${url}/metrics`)
    expect(metrics.headers.get('content-type')).toBe('text/plain; version=0.0.4')
    expect(await metrics.text()).toBe('up 1\n')
    for (const [method, path] of [
      ['GET', '/docs/x'],
      ['POST', '/healthz'],
      ['GET', '/healthz?verbose'],
    ] as const) {
      const res = await fetch(`${url}${path}`, { method })
      expect(res.status).toBe(404)
      expect(res.headers.get('content-type')).toBe('application/json')
      expect(await res.json()).toEqual({
        error: { code: 'NOT_FOUND', message: `no route for ${method} ${path}` },
      })
    }
  })

  it('is 503 with the reason when not ready', async () => {
    await using server = await serve({
      readiness: () => ({ ready: false, reason: 'redis connecting' }),
      metrics: () => Promise.reject(new Error('unused')),
    })
    const res = await fetch(`http://127.0.0.1:${server.port}/readyz`)
    expect([res.status, await res.json()]).toEqual([
      503,
      { status: 'not ready', reason: 'redis connecting' },
    ])
  })
})
