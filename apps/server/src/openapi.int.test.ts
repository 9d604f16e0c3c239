/**
 * The OpenAPI description (`GET /openapi.json`) against what nodes do, both ways:
 * (a) the routes `mountHttpApi` registers — recorded from its calls, not listed by hand — are
 *     exactly the described ones;
 * (b) every described operation, requested of a real node (AUTH_MODE=jwt, real Redis), answers a
 *     status it lists, with the content type, headers and JSON body its schemas accept.
 * The document itself is validated against the OpenAPI 3.1 schema.
 */
import { Validator } from '@seriousme/openapi-schema-validator'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormatsModule from 'ajv-formats'
import { SignJWT } from 'jose'
import * as Y from 'yjs'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  describeRegistration,
  type HttpApiOptions,
  mountHttpApi,
  OPENAPI_PATH,
  type OpenApiDocument,
  openApiDocument as spec,
} from '@streambed/node'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { startTestNode, type TestNode } from './testing/test-node.js'

const redis = useRedisServer()
const SECRET = 'openapi-test-secret-of-32-or-more-characters'
const METRICS_TOKEN = 'openapi-metrics-token'
const ALLOWED = 'http://allowed.example'

type Method = 'get' | 'post' | 'delete' | 'options'
type Operation = NonNullable<OpenApiDocument['paths'][string][Method]>
type Schema = OpenApiDocument['components']['schemas'][string]

/**
 * Registrations of `mountHttpApi` that are not API routes, each with the reason. A page or file
 * registered through it (say the demo's `GET /`) goes into the description or here. The static
 * site (`mountStaticSite`) is mounted beside the API by server.ts, so it is outside this check.
 */
const notApiRoutes = new Map([
  [
    'any /*',
    'the catch-all: any other path or method answers 404 NOT_FOUND (checked below); with ' +
      'DEMO=on the static site answers its own GET/HEAD paths first',
  ],
])

// --- (a) routes ------------------------------------------------------------------------------

/** What `mountHttpApi` registers with `access`, as `method path` in OpenAPI terms. */
const registeredRoutes = (access: HttpApiOptions['access']): string[] => {
  const calls: { method: string; pattern: string }[] = []
  // Any method called on the app is a registration (get, post, del, options, any, ws, …).
  const app: unknown = new Proxy(
    {},
    {
      get: (_target, method) => (pattern: string) => {
        calls.push({ method: String(method), pattern })
        return app
      },
    },
  )
  // No handler runs, so the options hold only what mounting reads.
  const opts = { access, onHttpError: () => undefined } as unknown as HttpApiOptions
  mountHttpApi(app as Parameters<typeof mountHttpApi>[0], opts)
  expect(calls.length).toBeGreaterThan(0)
  return calls
    .flatMap((c) => describeRegistration(c.method, c.pattern))
    .map((r) => `${r.method} ${r.path}`)
    .filter((route) => !notApiRoutes.has(route))
    .sort()
}

const describedRoutes = Object.entries(spec.paths)
  .flatMap(([path, item]) => Object.keys(item).map((method) => `${method} ${path}`))
  .sort()

describe('the OpenAPI description', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const validator = new Validator()
    const result = await validator.validate(
      structuredClone(spec) as unknown as Record<string, unknown>,
    )
    expect(result.errors).toBeUndefined()
    expect(result.valid).toBe(true)
    expect(validator.version).toBe('3.1')
  })

  it('describes every route a node registers, and no other', () => {
    expect(registeredRoutes({ kind: 'open' })).toEqual(describedRoutes)
    expect(registeredRoutes({ kind: 'token', token: METRICS_TOKEN })).toEqual(describedRoutes)
    // With METRICS_PORT, /metrics is served there, not on the API port (described as 404 here).
    expect(registeredRoutes({ kind: 'elsewhere' })).toEqual(
      describedRoutes.filter((r) => r !== 'get /metrics'),
    )
    expect(describedRoutes).toContain(`get ${OPENAPI_PATH}`)
  })

  it('reports a /docs/* registration of a method no document route has, not nothing', () => {
    expect(describeRegistration('put', '/docs/*')).toEqual([{ method: 'put', path: '/docs/*' }])
    expect(describeRegistration('del', '/docs/*')).toEqual([
      { method: 'delete', path: '/docs/{name}' },
    ])
  })
})

// --- (b) answers -----------------------------------------------------------------------------

const SPEC_ID = 'https://streambed.invalid/openapi.json'
// ajv-formats is CommonJS; under NodeNext its default export is the module object.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default
const ajv = new Ajv2020({ allErrors: true, strictSchema: false })
addFormats(ajv)
ajv.addSchema(spec, SPEC_ID)

/** A JSON pointer (as a URI fragment) to `segments` of the description. */
const pointer = (...segments: string[]) =>
  '#/' +
  segments.map((s) => encodeURIComponent(s.replace(/~/g, '~0').replace(/\//g, '~1'))).join('/')

const expectValid = (ref: string, value: unknown, what: string) => {
  const validate = ajv.compile({ $ref: `${SPEC_ID}${ref}` })
  const ok = validate(value)
  expect(ok ? [] : validate.errors, `${what}: ${JSON.stringify(value)}`).toEqual([])
}

/** A header's text as its schema types it (headers are simple-style values). */
const headerValue = (text: string, schema: Schema): unknown =>
  schema.type === 'integer' || schema.type === 'number' ? Number(text) : text

interface Case {
  method: Method
  /** The described path the request is for. */
  path: string
  /** The request's own path and query. */
  url: string
  headers?: Record<string, string>
  body?: Uint8Array | string
  /** The status this case is about (must also be one the description lists). */
  status: number
  /** The error code expected, for error statuses. */
  code?: string
}

const exercised = new Map<string, Set<number>>()

/** Sends `c` to `node` and checks the answer against the description; returns the body. */
const request = async (node: TestNode, c: Case): Promise<Buffer> => {
  const what = `${c.method.toUpperCase()} ${c.url}`
  const res = await fetch(`${node.httpUrl}${c.url}`, {
    method: c.method.toUpperCase(),
    headers: c.headers ?? {},
    ...(c.body === undefined ? {} : { body: c.body }),
  })
  const body = Buffer.from(await res.arrayBuffer())
  expect(res.status, `${what}: ${body.toString().slice(0, 300)}`).toBe(c.status)
  const op: Operation | undefined = spec.paths[c.path]?.[c.method]
  expect(op, `${c.method} ${c.path} is not described`).toBeDefined()
  const described = op?.responses[String(res.status)]
  expect(described, `${what} answered ${res.status}, which is not described`).toBeDefined()
  if (!described) return body
  const key = `${c.method} ${c.path}`
  exercised.set(key, (exercised.get(key) ?? new Set()).add(res.status))

  const type = res.headers.get('content-type')?.split(';')[0]?.trim()
  if (described.content === undefined) {
    expect(body.byteLength, `${what}: no body described`).toBe(0)
  } else {
    expect(Object.keys(described.content), `${what}: content type`).toContain(type)
    if (type === 'application/json') {
      const value: unknown = JSON.parse(body.toString('utf8'))
      const at = ['paths', c.path, c.method, 'responses', String(res.status), 'content', type]
      expectValid(pointer(...at, 'schema'), value, what)
      if (c.code !== undefined) expect(value, what).toMatchObject({ error: { code: c.code } })
    }
  }
  for (const [name, header] of Object.entries(described.headers ?? {})) {
    const text = res.headers.get(name)
    if (header.required) expect(text, `${what}: header ${name}`).not.toBeNull()
    if (text === null) continue
    const at = ['paths', c.path, c.method, 'responses', String(res.status), 'headers', name]
    expectValid(pointer(...at, 'schema'), headerValue(text, header.schema), `${what} ${name}`)
  }
  return body
}

const sign = (claims: Record<string, unknown>) =>
  new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .sign(new TextEncoder().encode(SECRET))

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

const updateOf = (text: string): Uint8Array => {
  const doc = new Y.Doc()
  doc.getText('t').insert(0, text)
  return Y.encodeStateAsUpdate(doc)
}

const textOf = (update: Uint8Array): string => {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, update)
  return doc.getText('t').toString()
}

describe('a node answers as described', () => {
  const env = (label: string, extra: Record<string, string> = {}) => ({
    REDIS_URL: redis.url,
    REDIS_PREFIX: uniquePrefix(label),
    AUTH_MODE: 'jwt',
    AUTH_JWT_SECRET: SECRET,
    WS_MAX_MESSAGE_BYTES: '4096',
    ...extra,
  })
  let writer: string
  let reader: string
  let deleter: string
  beforeAll(async () => {
    writer = await sign({ docs: ['api/*'] })
    reader = await sign({ docs: ['api/*'], access: 'read' })
    deleter = await sign({ doc: 'api/notes', delete: true })
  })

  it('the document routes, with their errors', async () => {
    await using node = await startTestNode(env('openapi'))
    const doc = '/docs/api/notes'
    const served = await request(node, {
      method: 'get',
      path: OPENAPI_PATH,
      url: OPENAPI_PATH,
      status: 200,
    })
    expect(JSON.parse(served.toString('utf8'))).toEqual(JSON.parse(JSON.stringify(spec)))

    const D = '/docs/{name}'
    const post = { method: 'post', path: D, url: doc } as const
    // Sent twice: the second time it adds nothing.
    const hello = updateOf('hello')
    const appended = await request(node, {
      ...post,
      headers: bearer(writer),
      body: hello,
      status: 200,
    })
    expect(JSON.parse(appended.toString())).toMatchObject({ appended: true })
    const again = await request(node, {
      ...post,
      headers: bearer(writer),
      body: hello,
      status: 200,
    })
    expect(JSON.parse(again.toString())).toMatchObject({ appended: false, id: null })
    await request(node, {
      ...post,
      headers: bearer(reader),
      body: updateOf('x'),
      status: 403,
      code: 'FORBIDDEN',
    })
    await request(node, { ...post, body: updateOf('x'), status: 401, code: 'UNAUTHORIZED' })
    const garbage = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff])
    await request(node, {
      ...post,
      headers: bearer(writer),
      body: garbage,
      status: 400,
      code: 'BAD_MESSAGE',
    })
    const tooLarge = new Uint8Array(5000)
    await request(node, {
      ...post,
      headers: bearer(writer),
      body: tooLarge,
      status: 413,
      code: 'TOO_LARGE',
    })

    const get = { method: 'get', path: D } as const
    const read = await request(node, { ...get, url: doc, headers: bearer(reader), status: 200 })
    expect(textOf(read)).toBe('hello')
    const viaQuery = await request(node, { ...get, url: `${doc}?token=${reader}`, status: 200 })
    expect(textOf(viaQuery)).toBe('hello')
    const now = await request(node, { ...get, url: `${doc}?at=now&token=${reader}`, status: 200 })
    expect(textOf(now)).toBe('hello')
    await request(node, {
      ...get,
      url: `${doc}?at=2000-01-01&token=${reader}`,
      status: 404,
      code: 'NOT_FOUND',
    })
    await request(node, {
      ...get,
      url: `${doc}?at=yesterday&token=${reader}`,
      status: 400,
      code: 'BAD_MESSAGE',
    })
    await request(node, { ...get, url: doc, status: 401, code: 'UNAUTHORIZED' })
    await request(node, {
      ...get,
      url: doc,
      headers: bearer('not-a-jwt'),
      status: 401,
      code: 'UNAUTHORIZED',
    })
    await request(node, {
      ...get,
      url: '/docs/other',
      headers: bearer(reader),
      status: 403,
      code: 'FORBIDDEN',
    })
    await request(node, {
      ...get,
      url: '/docs/api/a%20b',
      headers: bearer(reader),
      status: 400,
      code: 'BAD_DOC_NAME',
    })
    await request(node, {
      ...get,
      url: '/docs/api//b',
      headers: bearer(reader),
      status: 400,
      code: 'BAD_DOC_NAME',
    })

    // `{name}` is the rest of the path; an encoded last `/` keeps `history` in the name.
    const H = '/docs/{name}/history'
    const history = await request(node, {
      method: 'get',
      path: H,
      url: `${doc}/history?bucket=1ms&limit=10`,
      headers: bearer(reader),
      status: 200,
    })
    expect(JSON.parse(history.toString())).toMatchObject({ omitted: 0, versions: [{ entries: 1 }] })
    await request(node, {
      method: 'get',
      path: H,
      url: `${doc}/history?limit=0`,
      headers: bearer(reader),
      status: 400,
      code: 'BAD_MESSAGE',
    })
    await request(node, {
      method: 'get',
      path: H,
      url: `${doc}/history`,
      status: 401,
      code: 'UNAUTHORIZED',
    })
    await request(node, {
      ...post,
      url: '/docs/api%2Fhistory',
      headers: bearer(writer),
      body: updateOf('named history'),
      status: 200,
    })
    const encoded = await request(node, {
      ...get,
      url: '/docs/api%2Fhistory',
      headers: bearer(reader),
      status: 200,
    })
    expect(textOf(encoded)).toBe('named history')
    // Only GET takes `/history` as a route: POST and DELETE reach the document `api/x/history`.
    await request(node, {
      ...post,
      url: '/docs/api/x/history',
      headers: bearer(writer),
      body: updateOf('x history'),
      status: 200,
    })
    const suffixed = await request(node, {
      ...get,
      url: '/docs/api%2Fx%2Fhistory',
      headers: bearer(reader),
      status: 200,
    })
    expect(textOf(suffixed)).toBe('x history')
    const deletedSuffixed = await request(node, {
      method: 'delete',
      path: D,
      url: '/docs/api/x/history',
      headers: bearer(await sign({ doc: 'api/x/history', delete: true })),
      status: 200,
    })
    expect(JSON.parse(deletedSuffixed.toString())).toMatchObject({ deleted: true })

    const R = '/docs/{name}/restore'
    const restore = { method: 'post', path: R, url: `${doc}/restore` } as const
    const restored = await request(node, {
      ...restore,
      url: `${doc}/restore?at=now`,
      headers: bearer(writer),
      status: 200,
    })
    expect(JSON.parse(restored.toString())).toMatchObject({ appended: false, exact: true })
    const json = { ...bearer(writer), 'content-type': 'application/json' }
    await request(node, {
      ...restore,
      headers: json,
      body: JSON.stringify({ at: Date.now() }),
      status: 200,
    })
    await request(node, {
      ...restore,
      headers: json,
      body: JSON.stringify({ at: '2000-01-01' }),
      status: 404,
      code: 'NOT_FOUND',
    })
    await request(node, { ...restore, headers: bearer(writer), status: 400, code: 'BAD_MESSAGE' })
    await request(node, {
      ...restore,
      headers: bearer(reader),
      body: '{"at":"now"}',
      status: 403,
      code: 'FORBIDDEN',
    })
    await request(node, {
      ...restore,
      headers: bearer(writer),
      body: 'x'.repeat(5000),
      status: 413,
      code: 'TOO_LARGE',
    })

    for (const path of [D, H, R])
      await request(node, {
        method: 'options',
        path,
        url: path.replace('{name}', 'api/notes'),
        status: 204,
      })

    const del = { method: 'delete', path: D, url: doc } as const
    await request(node, { ...del, headers: bearer(writer), status: 403, code: 'FORBIDDEN' })
    await request(node, { ...del, status: 401, code: 'UNAUTHORIZED' })
    const deleted = await request(node, { ...del, headers: bearer(deleter), status: 200 })
    expect(JSON.parse(deleted.toString())).toMatchObject({ deleted: true })
    const gone = await request(node, { ...get, url: doc, headers: bearer(reader), status: 200 })
    expect(textOf(gone)).toBe('')

    await request(node, { method: 'get', path: '/healthz', url: '/healthz', status: 200 })
    const ready = await request(node, {
      method: 'get',
      path: '/readyz',
      url: '/readyz',
      status: 200,
    })
    expect(JSON.parse(ready.toString())).toHaveProperty('connections')
    const metrics = await request(node, {
      method: 'get',
      path: '/metrics',
      url: '/metrics',
      status: 200,
    })
    expect(metrics.toString()).toContain('streambed_')

    // Anything not described answers 404 NOT_FOUND in the error shape.
    for (const [method, url] of [
      ['GET', '/nope'],
      ['PUT', '/docs/api/notes'],
      ['GET', '/docs'],
    ]) {
      const res = await fetch(`${node.httpUrl}${url}`, { method })
      expect(res.status, `${method} ${url}`).toBe(404)
      const value: unknown = await res.json()
      expectValid('#/components/schemas/Error', value, `${method} ${url}`)
      expect(value).toMatchObject({ error: { code: 'NOT_FOUND' } })
    }
  })

  it('origins, rate limits and the operations endpoints as configured', async () => {
    await using node = await startTestNode(
      env('openapi-limits', {
        ALLOWED_ORIGINS: ALLOWED,
        METRICS_TOKEN,
        HTTP_MAX_REQUESTS_PER_SECOND: '1',
      }),
    )
    const D = '/docs/{name}'
    const evil = { origin: 'http://evil.example' }
    await request(node, {
      method: 'options',
      path: D,
      url: '/docs/api/x',
      headers: evil,
      status: 403,
      code: 'FORBIDDEN',
    })
    await request(node, {
      method: 'options',
      path: D,
      url: '/docs/api/x',
      headers: { origin: ALLOWED },
      status: 204,
    })
    await request(node, {
      method: 'get',
      path: '/metrics',
      url: '/metrics',
      status: 401,
      code: 'UNAUTHORIZED',
    })
    const full = bearer(METRICS_TOKEN)
    await request(node, {
      method: 'get',
      path: '/metrics',
      url: '/metrics',
      headers: full,
      status: 200,
    })
    const ready = await request(node, {
      method: 'get',
      path: '/readyz',
      url: '/readyz',
      status: 200,
    })
    expect(JSON.parse(ready.toString())).toEqual({ status: 'ready' })
    // One request per second, in a burst of one: the second of two at once is refused.
    const get = { method: 'get', path: D, url: '/docs/api/x', headers: bearer(reader) } as const
    const statuses: number[] = []
    for (let i = 0; i < 5 && !statuses.includes(429); i++) {
      const res = await fetch(`${node.httpUrl}${get.url}`, { headers: get.headers })
      statuses.push(res.status)
      await res.arrayBuffer()
    }
    expect(statuses).toContain(429)
    await request(node, { ...get, status: 429, code: 'RATE_LIMITED' })

    await using elsewhere = await startTestNode(env('openapi-metrics-port', { METRICS_PORT: '0' }))
    await request(elsewhere, {
      method: 'get',
      path: '/metrics',
      url: '/metrics',
      status: 404,
      code: 'NOT_FOUND',
    })
  })

  it('exercised every described operation, and its success status', () => {
    for (const route of describedRoutes) {
      const [method, path] = route.split(' ') as [Method, string]
      const ok = Object.keys(spec.paths[path]?.[method]?.responses ?? {}).filter((s) => s < '300')
      const seen = [...(exercised.get(route) ?? [])].map(String)
      expect(seen, route).toEqual(expect.arrayContaining(ok))
    }
    const errorStatuses = new Set([...exercised.values()].flatMap((s) => [...s]))
    for (const status of [400, 401, 403, 404, 413, 429]) expect(errorStatuses).toContain(status)
  })
})
