import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js'
import { AppError, answerOps, type OpsEndpoints, parseDuration } from '@streambed/common'
import { parseTime } from '@streambed/recovery'
import { mergeAll } from '@streambed/protocol'
import { partsOf } from '@streambed/streams'
import type { Admission } from './admission.js'
import { createReply, readBody, type Reply, tokenFrom } from './http.js'
import type { NodeMetrics } from './metrics.js'
import type { KeyedBuckets } from './rate-limit.js'
import type { NodeRuntime } from './runtime.js'

/**
 * Who sees the operations endpoints in full (`/metrics`, `/readyz` details): everyone, only
 * callers with `Authorization: Bearer <token>`, or nobody on this port (a METRICS_PORT serves them).
 */
export type OpsAccess = { kind: 'open' } | { kind: 'token'; token: string } | { kind: 'elsewhere' }

export interface OpsRoutesOptions {
  ops: OpsEndpoints
  access: OpsAccess
  onHttpError: (err: unknown, status: number) => void
}

export interface HttpApiOptions extends OpsRoutesOptions {
  runtime: NodeRuntime
  admission: Admission
  metrics: NodeMetrics
  /** Requests per second per client address. */
  buckets: KeyedBuckets
  /** Largest accepted request body. */
  maxBodyBytes: number
}

/** `/healthz`, `/readyz` and (unless served elsewhere) `/metrics` on `app`. */
export const mountOpsRoutes = (app: TemplatedApp, opts: OpsRoutesOptions): void => {
  const { access } = opts
  const paths =
    access.kind === 'elsewhere' ? ['/healthz', '/readyz'] : ['/healthz', '/readyz', '/metrics']
  for (const path of paths) {
    app.get(path, (res, req) => {
      const full =
        access.kind === 'open' ||
        (access.kind === 'token' && tokenFrom(req.getHeader('authorization'), '') === access.token)
      const reply = createReply(res, opts.onHttpError)
      void answerOps('GET', path, opts.ops, { full }).then((a) => {
        if (a) reply.send(a.status, a.body, { 'content-type': a.contentType })
      })
    })
  }
}

/**
 * The HTTP routes of a node, on the WebSocket port: the operations endpoints and the document API
 * under `/docs/<name>` (GET: the document as one Yjs update; POST: append an update; DELETE: delete
 * it with its history), admitted as
 * sockets are (origin, token, revocation) and limited per client address. With ALLOWED_ORIGINS,
 * allowed browser origins get CORS headers. Errors become statuses in `Reply.error` only.
 */
export const mountHttpApi = (app: TemplatedApp, opts: HttpApiOptions): void => {
  const { runtime, admission } = opts
  mountOpsRoutes(app, opts)

  const route = (
    res: HttpResponse,
    req: HttpRequest,
    handle: (
      reply: Reply,
      path: string,
      token: string | undefined,
      origin: string,
    ) => Promise<void>,
  ) => {
    const path = req.getUrl().slice('/docs/'.length)
    const token = tokenFrom(req.getHeader('authorization'), req.getQuery())
    const origin = req.getHeader('origin')
    const address = Buffer.from(res.getRemoteAddressAsText()).toString()
    const reply = createReply(res, opts.onHttpError, corsHeaders(admission, origin))
    const waitMs = opts.buckets.take(address)
    if (waitMs > 0) {
      opts.metrics.httpRateLimited.inc()
      const why = 'more requests per second than HTTP_MAX_REQUESTS_PER_SECOND allows'
      return reply.error(new AppError('RATE_LIMITED', why), {
        'retry-after': String(Math.ceil(waitMs / 1000)),
      })
    }
    handle(reply, path, token, origin).catch((err: unknown) => reply.error(err))
  }

  app.get('/docs/*', (res, req) => {
    const query = new URLSearchParams(req.getQuery())
    route(res, req, async (reply, path, token, origin) => {
      if (path.endsWith(HISTORY)) {
        const { doc } = await admission.request(path.slice(0, -HISTORY.length), token, origin)
        const bucketMs = query.has('bucket')
          ? parseDurationParam('bucket', query.get('bucket'))
          : undefined
        const limit = query.has('limit') ? positiveInt('limit', query.get('limit')) : undefined
        return reply.json(200, await runtime.history(doc, { bucketMs, limit }))
      }
      const { doc } = await admission.request(path, token, origin)
      const at = query.get('at')
      if (at !== null) {
        const past = await runtime.readAt(doc, parseTime(at, Date.now()))
        return reply.send(200, past.state, {
          'content-type': 'application/octet-stream',
          'x-streambed-up-to': past.upTo,
          'x-streambed-as-of': new Date(past.asOf).toISOString(),
          'x-streambed-exact': String(past.exact),
        })
      }
      const read = await runtime.readState(doc)
      reply.send(200, mergeAll(partsOf(read)), {
        'content-type': 'application/octet-stream',
        'x-streambed-up-to': read.upTo,
      })
    })
  })

  app.post('/docs/*', (res, req) => {
    // The body is read from the start of the handler: uWS delivers it only to a synchronous onData.
    const body = readBody(res, opts.maxBodyBytes)
    // Handled below after admission; marked handled now in case it fails first (too large).
    body.catch(() => undefined)
    const query = new URLSearchParams(req.getQuery())
    route(res, req, async (reply, path, token, origin) => {
      const restoring = path.endsWith(RESTORE)
      const name = restoring ? path.slice(0, -RESTORE.length) : path
      const { doc, grant } = await admission.request(name, token, origin)
      if (grant.access !== 'write') throw new AppError('FORBIDDEN', 'token grants read access only')
      if (restoring) {
        const at = query.get('at') ?? atOfBody(await body)
        const result = await runtime.restore(doc, parseTime(at, Date.now()))
        return reply.json(200, {
          appended: result.appended !== null,
          id: result.appended?.id ?? null,
          asOf: new Date(result.asOf).toISOString(),
          exact: result.exact,
        })
      }
      const result = await runtime.appendUpdate(doc, await body)
      reply.json(200, { appended: result !== null, id: result?.id ?? null })
    })
  })

  app.del('/docs/*', (res, req) => {
    route(res, req, async (reply, path, token, origin) => {
      const { doc, grant } = await admission.request(path, token, origin)
      if (!grant.mayDelete)
        throw new AppError('FORBIDDEN', 'token does not grant deletion (claim "delete": true)')
      const result = await runtime.deleteDocument(doc)
      reply.json(200, { deleted: result.existed, at: new Date(result.deletedAt).toISOString() })
    })
  })

  app.options('/docs/*', (res, req) => {
    const origin = req.getHeader('origin')
    const reply = createReply(res, opts.onHttpError, corsHeaders(admission, origin))
    if (!admission.originAllowed(origin))
      return reply.error(new AppError('FORBIDDEN', `origin ${origin} is not in ALLOWED_ORIGINS`))
    reply.send(204, '', {
      'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
      'access-control-allow-headers': 'authorization, content-type',
      'access-control-max-age': '600',
    })
  })

  app.any('/*', (res, req) => {
    const what = `${req.getMethod().toUpperCase()} ${req.getUrl()}`
    createReply(res, opts.onHttpError).error(new AppError('NOT_FOUND', `no route for ${what}`))
  })
}

/** Reserved last segments of the document API's paths (a document named `x/history` is `x%2Fhistory`). */
const HISTORY = '/history'
const RESTORE = '/restore'

/** `{"at": "<time>"}` from a restore request's body. */
const atOfBody = (body: Uint8Array): string => {
  try {
    const value = (JSON.parse(Buffer.from(body).toString('utf8')) as { at?: unknown }).at
    if (typeof value === 'string' || typeof value === 'number') return String(value)
  } catch {
    // reported below
  }
  throw new AppError('BAD_MESSAGE', 'restore needs ?at=<time> or a JSON body {"at": "<time>"}')
}

const positiveInt = (name: string, raw: string | null): number => {
  const n = Number(raw)
  if (!Number.isInteger(n) || n <= 0)
    throw new AppError(
      'BAD_MESSAGE',
      `${name}: expected a positive integer, got ${JSON.stringify(raw)}`,
    )
  return n
}

const parseDurationParam = (name: string, raw: string | null): number => {
  const ms = raw === null ? undefined : parseDuration(raw)
  if (ms === undefined || ms <= 0)
    throw new AppError(
      'BAD_MESSAGE',
      `${name}: expected a duration like 1m, 1h, 1d; got ${JSON.stringify(raw)}`,
    )
  return ms
}

/** CORS headers for a browser origin ALLOWED_ORIGINS lets use the API (none otherwise). */
const corsHeaders = (admission: Admission, origin: string): Record<string, string> => {
  const allowed = admission.corsOrigin(origin)
  return allowed === null
    ? {}
    : {
        'access-control-allow-origin': allowed,
        'access-control-expose-headers': 'x-streambed-up-to',
        vary: 'origin',
      }
}
