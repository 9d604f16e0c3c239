import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js'
import { AppError, answerOps, type OpsEndpoints, parseDuration } from '@streambed/common'
import { parseTime } from '@streambed/recovery/history'
import { mergeAll } from '@streambed/protocol'
import { partsOf } from '@streambed/streams'
import type { Admission } from './admission.js'
import { createReply, readBody, type Reply, tokenFrom } from './http.js'
import type { NodeMetrics } from './metrics.js'
import type { KeyedBuckets } from './rate-limit.js'
import { OPENAPI_PATH, openApiDocument } from './openapi.js'
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
  const { admission } = opts
  mountOpsRoutes(app, opts)

  const description = JSON.stringify(openApiDocument)
  app.get(OPENAPI_PATH, (res, req) => {
    const reply = createReply(
      res,
      opts.onHttpError,
      corsHeaders(admission, req.getHeader('origin')),
    )
    reply.send(200, description, { 'content-type': 'application/json' })
  })

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
    const path = req.getUrl().slice(DOCS.length)
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

  // One uWS route per method: uWS wildcards only end a pattern, so `docRoutes` picks the route by
  // the path's last segment.
  for (const method of docMethods) {
    app[method](`${DOCS}*`, (res, req) => {
      // The body is read from the start of the handler: uWS delivers it only to a synchronous
      // onData. Handled after admission; marked handled now in case it fails first (too large).
      const body = method === 'post' ? readBody(res, opts.maxBodyBytes) : Promise.resolve(NO_BODY)
      body.catch(() => undefined)
      const query = new URLSearchParams(req.getQuery())
      route(res, req, async (reply, path, token, origin) => {
        const { suffix, handle } = docRouteFor(method, path)
        const name = path.slice(0, path.length - suffix.length)
        return handle({ reply, name, token, origin, query, body }, opts)
      })
    })
  }

  app.options(`${DOCS}*`, (res, req) => {
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

const DOCS = '/docs/'

/**
 * Reserved last segments of the document API's paths, for one method each (`docRoutes`): GET
 * `x/history` lists x's versions and POST `x/restore` restores x, while every other method reaches
 * the document named `x/history` or `x/restore` (DELETE `/docs/x/history` deletes it). `%2F`
 * reaches it with any method: `x%2Fhistory`.
 */
const HISTORY = '/history'
const RESTORE = '/restore'

/** One request to the document API, admitted by the handler itself. */
interface DocRequest {
  readonly reply: Reply
  /** The raw (percent-encoded) document name: the path after `/docs/` without the route's suffix. */
  readonly name: string
  readonly token: string | undefined
  readonly origin: string
  readonly query: URLSearchParams
  /** The request body (POST; empty otherwise); rejects with TOO_LARGE. */
  readonly body: Promise<Uint8Array>
}

type DocMethod = 'get' | 'post' | 'del'

interface DocRoute {
  /** The uWS method (`del` is DELETE). */
  readonly method: DocMethod
  /** The reserved last segment after the document name, or '' for the document itself. */
  readonly suffix: '' | typeof HISTORY | typeof RESTORE
  readonly handle: (r: DocRequest, opts: HttpApiOptions) => Promise<void>
}

const readDocument = async (r: DocRequest, { admission, runtime }: HttpApiOptions) => {
  const { doc } = await admission.request(r.name, r.token, r.origin)
  const at = r.query.get('at')
  if (at !== null) {
    const past = await runtime.readAt(doc, parseTime(at, Date.now()))
    return r.reply.send(200, past.state, {
      'content-type': 'application/octet-stream',
      'x-streambed-up-to': past.upTo,
      'x-streambed-as-of': new Date(past.asOf).toISOString(),
      'x-streambed-exact': String(past.exact),
    })
  }
  const read = await runtime.readState(doc)
  r.reply.send(200, mergeAll(partsOf(read)), {
    'content-type': 'application/octet-stream',
    'x-streambed-up-to': read.upTo,
  })
}

const listHistory = async (
  { name, token, origin, query, reply }: DocRequest,
  o: HttpApiOptions,
) => {
  const { doc } = await o.admission.request(name, token, origin)
  const bucketMs = query.has('bucket')
    ? parseDurationParam('bucket', query.get('bucket'))
    : undefined
  const limit = query.has('limit') ? positiveInt('limit', query.get('limit')) : undefined
  reply.json(200, await o.runtime.history(doc, { bucketMs, limit }))
}

/** Admits a request that writes to the document. */
const admitWrite = async (r: DocRequest, { admission }: HttpApiOptions) => {
  const admitted = await admission.request(r.name, r.token, r.origin)
  if (admitted.grant.access !== 'write')
    throw new AppError('FORBIDDEN', 'token grants read access only')
  return admitted
}

const appendUpdate = async (r: DocRequest, opts: HttpApiOptions) => {
  const { doc } = await admitWrite(r, opts)
  const result = await opts.runtime.appendUpdate(doc, await r.body)
  r.reply.json(200, { appended: result !== null, id: result?.id ?? null })
}

const restoreDocument = async (r: DocRequest, opts: HttpApiOptions) => {
  const { doc } = await admitWrite(r, opts)
  const at = r.query.get('at') ?? atOfBody(await r.body)
  const result = await opts.runtime.restore(doc, parseTime(at, Date.now()))
  r.reply.json(200, {
    appended: result.appended !== null,
    id: result.appended?.id ?? null,
    asOf: new Date(result.asOf).toISOString(),
    exact: result.exact,
  })
}

const deleteDocument = async (r: DocRequest, { admission, runtime }: HttpApiOptions) => {
  const { doc, grant } = await admission.request(r.name, r.token, r.origin)
  if (!grant.mayDelete)
    throw new AppError('FORBIDDEN', 'token does not grant deletion (claim "delete": true)')
  const result = await runtime.deleteDocument(doc)
  r.reply.json(200, { deleted: result.existed, at: new Date(result.deletedAt).toISOString() })
}

/**
 * The document API, `/docs/<name><suffix>`: what mounts it, and what `describeRegistration`
 * (hence the OpenAPI test) reads. Among a method's routes, a path ending in a suffix goes to that
 * route, any other to the one without.
 */
const docRoutes: readonly DocRoute[] = [
  { method: 'get', suffix: '', handle: readDocument },
  { method: 'get', suffix: HISTORY, handle: listHistory },
  { method: 'post', suffix: '', handle: appendUpdate },
  { method: 'post', suffix: RESTORE, handle: restoreDocument },
  { method: 'del', suffix: '', handle: deleteDocument },
]

const docMethods = [...new Set(docRoutes.map((r) => r.method))]

const docRouteFor = (method: DocMethod, path: string): DocRoute => {
  const routes = docRoutes.filter((r) => r.method === method)
  const route =
    routes.find((r) => r.suffix !== '' && path.endsWith(r.suffix)) ??
    routes.find((r) => r.suffix === '')
  if (!route) throw new AppError('INTERNAL', `no document route for ${method} ${path}`)
  return route
}

const NO_BODY = new Uint8Array()

/** A route of the HTTP API as OpenAPI writes it: `{name}` is a document name (the rest of the path). */
export interface HttpRoute {
  readonly method: string
  readonly path: string
}

/**
 * The routes one registration of `mountHttpApi`, `app[method](pattern, …)`, answers, as OpenAPI
 * paths: `/docs/*` is the document API's routes for that method (OPTIONS: all of them); any other
 * registration is its own route (`del` written `delete`, the catch-all `any /*`). A `/docs/*`
 * registration of a method `docRoutes` lacks is reported as itself, `{method, path: '/docs/*'}`,
 * so that the OpenAPI test sees a route the description cannot hold instead of nothing.
 */
export const describeRegistration = (method: string, pattern: string): HttpRoute[] => {
  const asOpenApi = method === 'del' ? 'delete' : method
  if (pattern !== `${DOCS}*`) return [{ method: asOpenApi, path: pattern }]
  const served = method === 'options' ? docRoutes : docRoutes.filter((r) => r.method === method)
  if (served.length === 0) return [{ method: asOpenApi, path: pattern }]
  const paths = [...new Set(served.map((r) => `${DOCS}{name}${r.suffix}`))]
  return paths.map((path) => ({ method: asOpenApi, path }))
}

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
