/**
 * The operations endpoints every Streambed process serves (`GET /healthz`, `/readyz`, `/metrics`),
 * as one pure answer function: server nodes call it from uWebSockets.js, workers from node:http.
 */

export interface Readiness {
  readonly ready: boolean
  /** Why the process is not ready (shown on /readyz with status 503). */
  readonly reason?: string
  /** Extra fields shown on /readyz (connection count, active tasks, …). */
  readonly details?: Readonly<Record<string, unknown>>
}

export interface OpsEndpoints {
  readiness(): Readiness | Promise<Readiness>
  /** The Prometheus exposition and its content type. */
  metrics(): Promise<{ contentType: string; text: string }>
}

export interface OpsAnswer {
  readonly status: number
  readonly contentType: string
  readonly body: string
}

const json = (status: number, value: unknown): OpsAnswer => ({
  status,
  contentType: 'application/json',
  body: JSON.stringify(value),
})

/** The paths `answerOps` serves. */
export const opsPaths = ['/healthz', '/readyz', '/metrics'] as const

/**
 * The answer to `GET <path>` for an operations path, or null for any other request (the caller
 * routes it on). Failures of `readiness` or `metrics` become 503 / 500 answers, never throws.
 * `full: false` (a caller without the metrics token): /metrics is refused (401) and /readyz
 * shows its status without details.
 */
export const answerOps = async (
  method: string,
  path: string,
  ops: OpsEndpoints,
  opts: { full?: boolean } = {},
): Promise<OpsAnswer | null> => {
  const full = opts.full ?? true
  if (method.toUpperCase() !== 'GET') return null
  switch (path) {
    case '/healthz':
      return json(200, { status: 'ok' })
    case '/readyz': {
      try {
        const r = await ops.readiness()
        const details = full ? r.details : {}
        return r.ready
          ? json(200, { status: 'ready', ...details })
          : json(503, { status: 'not ready', reason: r.reason ?? 'not ready', ...details })
      } catch (err) {
        return json(503, {
          status: 'not ready',
          reason: err instanceof Error ? err.message : String(err),
        })
      }
    }
    case '/metrics':
      if (!full) {
        const message = 'metrics need Authorization: Bearer <METRICS_TOKEN>'
        return json(401, { error: { code: 'UNAUTHORIZED', message } })
      }
      try {
        const m = await ops.metrics()
        return { status: 200, contentType: m.contentType, body: m.text }
      } catch (err) {
        return json(500, {
          error: { code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) },
        })
      }
    default:
      return null
  }
}
