/**
 * The OpenAPI 3.1 description of a node's HTTP API, served at `GET /openapi.json`. Written as a
 * typed object rather than a YAML file so that it cannot drift from the catalogues it is built
 * from (error codes, document name rules); apps/server/src/openapi.int.test.ts checks it against
 * the routes a node registers and the answers real nodes give.
 */
import { type ErrorCode, errorCatalogue } from '@streambed/common'
import { DOC_NAME_MAX_LENGTH, docNameRules } from '@streambed/protocol'

/** A JSON Schema (2020-12, the dialect of OpenAPI 3.1), as far as this description uses it. */
export interface Schema {
  $ref?: string
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean' | 'null'
  description?: string
  properties?: Record<string, Schema>
  required?: readonly string[]
  additionalProperties?: boolean | Schema
  items?: Schema
  oneOf?: readonly Schema[]
  enum?: readonly (string | number | boolean)[]
  const?: string | number | boolean
  pattern?: string
  format?: 'date-time'
  minimum?: number
  minLength?: number
  maxLength?: number
  examples?: readonly unknown[]
}

export interface Header {
  description: string
  required?: boolean
  schema: Schema
}

export interface MediaType {
  schema: Schema
}

export interface Response {
  description: string
  headers?: Record<string, Header>
  content?: Record<string, MediaType>
}

export interface Parameter {
  name: string
  in: 'path' | 'query'
  description: string
  required: boolean
  schema: Schema
  examples?: Record<string, { summary: string; value: string }>
}

export interface RequestBody {
  description: string
  required: boolean
  content: Record<string, MediaType>
}

/** Each entry names one scheme a request may satisfy; `{}` means no credentials at all. */
export type SecurityRequirement = Record<string, readonly string[]>

export interface Operation {
  operationId: string
  summary: string
  description: string
  tags: readonly string[]
  parameters?: readonly Parameter[]
  requestBody?: RequestBody
  /** By status code. */
  responses: Record<string, Response>
  security: readonly SecurityRequirement[]
}

export type HttpMethod = 'get' | 'post' | 'delete' | 'options'

export type PathItem = Partial<Record<HttpMethod, Operation>>

export interface SecurityScheme {
  type: 'http' | 'apiKey'
  description: string
  scheme?: 'bearer'
  bearerFormat?: string
  name?: string
  in?: 'query'
}

export interface OpenApiDocument {
  openapi: '3.1.0'
  info: { title: string; version: string; summary: string; description: string }
  tags: readonly { name: string; description: string }[]
  paths: Record<string, PathItem>
  components: {
    schemas: Record<string, Schema>
    securitySchemes: Record<string, SecurityScheme>
  }
}

/** Where the description is served. */
export const OPENAPI_PATH = '/openapi.json'

const ref = (schema: string): Schema => ({ $ref: `#/components/schemas/${schema}` })

const json = (schema: Schema): Record<string, MediaType> => ({ 'application/json': { schema } })

// ---------------------------------------------------------------------------------------------
// Errors: one JSON shape; the codes each status can carry come from the catalogue.

const errorCodes = Object.keys(errorCatalogue) as ErrorCode[]

const codesOf = (status: number): ErrorCode[] =>
  errorCodes.filter((code) => errorCatalogue[code].httpStatus === status)

/** What an error status means here, before the list of its codes. */
const errorMeaning: Record<number, string> = {
  400: 'The request is malformed: a document name that breaks the rules, a body that is not a Yjs update, or a bad parameter.',
  401: 'No token, or one that is malformed, expired, revoked or wrongly signed (`AUTH_MODE=jwt`).',
  403: 'The token does not grant this: not this document, read-only for a write, no `"delete": true` for a deletion; or the `Origin` is not in `ALLOWED_ORIGINS`.',
  404: 'Nothing there.',
  413: 'The body is larger than `WS_MAX_MESSAGE_BYTES`.',
  429: 'More requests per second from this client address than `HTTP_MAX_REQUESTS_PER_SECOND` allows, or too much work in flight.',
  500: 'A bug or a configuration error; the node logs it.',
  503: 'Redis or the storage is unavailable, or the node is stopping; retry, possibly on another node.',
}

const retryAfter: Header = {
  description: 'Seconds to wait before the next request (with `RATE_LIMITED`).',
  schema: { type: 'integer', minimum: 1 },
}

/** An error answer of `status`: the shared shape, with `error.code` narrowed to the status' codes. */
const errorResponse = (status: number, meaning = errorMeaning[status] ?? ''): Response => {
  const codes = codesOf(status)
  const list = codes.map((c) => `\`${c}\` (${errorCatalogue[c].description})`).join('; ')
  return {
    description: `${meaning} Codes: ${list}.`,
    ...(status === 429 ? { headers: { 'retry-after': retryAfter } } : {}),
    content: json({
      $ref: '#/components/schemas/Error',
      type: 'object',
      properties: { error: { type: 'object', properties: { code: { enum: codes } } } },
    }),
  }
}

const errors = (...statuses: number[]): Record<string, Response> =>
  Object.fromEntries(statuses.map((s) => [String(s), errorResponse(s)]))

/** What every document route can answer besides its own statuses. */
const DOC_ERRORS = [400, 401, 403, 429, 500, 503]

// ---------------------------------------------------------------------------------------------
// Parameters, headers, security

const docNameParameter: Parameter = {
  name: 'name',
  in: 'path',
  required: true,
  description:
    'The document name: the rest of the path after `/docs/`, percent-decoded. It may contain ' +
    '`/`, sent as is (`/docs/team-1/notes`) or as `%2F` (`/docs/team-1%2Fnotes`): both name ' +
    '`team-1/notes`. `%2F` is the portable form: a client that percent-encodes the whole ' +
    'parameter (as OpenAPI tools do) sends it, and it is never mistaken for a route. The last ' +
    'segments `history` and `restore` are reserved for two routes only, ' +
    '`GET /docs/{name}/history` and `POST /docs/{name}/restore`; with any other method they ' +
    'are part of the name ' +
    '(`DELETE /docs/team-1/history` deletes the document `team-1/history`, ' +
    '`POST /docs/team-1/history` appends to it); with those two, the document `team-1/history` ' +
    'or `team-1/restore` is reached by percent-encoding the last `/` (`/docs/team-1%2Fhistory`). ' +
    `Rules: ${docNameRules}; anything else answers 400 \`BAD_DOC_NAME\` ` +
    'naming the rule it breaks.',
  schema: {
    type: 'string',
    minLength: 1,
    maxLength: DOC_NAME_MAX_LENGTH,
    pattern: '^[A-Za-z0-9\\-_.~:@+=,]+(/[A-Za-z0-9\\-_.~:@+=,]+)*$',
    examples: ['notes', 'team-1/notes'],
  },
}

const timeForms =
  'An ISO 8601 time (`2026-11-27T10:00:00Z`; without an offset it is UTC) or date ' +
  '(`2026-11-27`, midnight UTC), epoch milliseconds (`1795773600000`), a time before now ' +
  '(`-90s`, `-30m`, `-2h`, `-7d`) or `now`.'

const timeExamples = {
  iso: { summary: 'an ISO 8601 time', value: '2026-11-27T10:00:00Z' },
  relative: { summary: 'thirty minutes ago', value: '-30m' },
  epoch: { summary: 'epoch milliseconds', value: '1795773600000' },
}

const upToHeader: Header = {
  description:
    'The last stream entry the answer includes: pass it on to correlate with a later read or ' +
    'with the history (`upTo`).',
  required: true,
  schema: ref('StreamId'),
}

/** Every document route; `{}` stands for `AUTH_MODE=none`, where no token is needed. */
const tokenSecurity: readonly SecurityRequirement[] = [{ bearer: [] }, { tokenQuery: [] }, {}]

const noSecurity: readonly SecurityRequirement[] = [{}]

const claims =
  'A JWT signed with the configured key (`AUTH_JWT_SECRET` for HS256/384/512, ' +
  '`AUTH_JWT_PUBLIC_KEY`, or `AUTH_JWKS_URL`), checked against `AUTH_JWT_ISSUER` / ' +
  '`AUTH_JWT_AUDIENCE` when set. Claims:\n' +
  '- `docs`: array of document names the token grants; an entry ending in `*` grants every name ' +
  'starting with what precedes it (`team-1/*`), `*` alone grants all;\n' +
  '- `doc`: one name (shorthand for `docs: [name]`);\n' +
  '- `access`: `"write"` (default) or `"read"`; a read token may only GET;\n' +
  '- `delete`: `true` lets a write token also delete the documents it grants;\n' +
  '- `exp`, `iat`, `jti`, `sub`: expiry, and what `streambed revoke` refuses tokens by.\n' +
  'With `AUTH_MODE=none` no token is needed and every caller may read, write and delete.'

const securitySchemes: Record<string, SecurityScheme> = {
  bearer: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: `\`Authorization: Bearer <jwt>\`. ${claims}`,
  },
  tokenQuery: {
    type: 'apiKey',
    in: 'query',
    name: 'token',
    description:
      'The same JWT as `?token=<jwt>` (as WebSocket clients pass it); the `Authorization` ' +
      'header wins when both are sent.',
  },
  metricsToken: {
    type: 'http',
    scheme: 'bearer',
    description:
      '`Authorization: Bearer <METRICS_TOKEN>` when the node is started with `METRICS_TOKEN`: ' +
      'needed for `/metrics` and for the details of `/readyz`.',
  },
}

// ---------------------------------------------------------------------------------------------
// Schemas

const streamIdPattern = '^[0-9]+-[0-9]+$'

const schemas: Record<string, Schema> = {
  Error: {
    type: 'object',
    description: 'Every error answer of the API.',
    required: ['error'],
    additionalProperties: false,
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message'],
        additionalProperties: false,
        properties: {
          code: {
            type: 'string',
            enum: errorCodes,
            description: 'A code of the error catalogue (README, "Close codes and error codes").',
          },
          message: { type: 'string', description: 'What went wrong, for people.' },
        },
      },
    },
    examples: [{ error: { code: 'FORBIDDEN', message: 'token grants read access only' } }],
  },
  StreamId: {
    type: 'string',
    pattern: streamIdPattern,
    description: 'A Redis stream entry id, `<epoch ms>-<sequence>`; `0-0` before the first entry.',
    examples: ['1795773600000-0'],
  },
  AppendResult: {
    type: 'object',
    required: ['appended', 'id'],
    additionalProperties: false,
    properties: {
      appended: {
        type: 'boolean',
        description: 'False when the update added nothing the document did not have.',
      },
      id: {
        oneOf: [ref('StreamId'), { type: 'null' }],
        description: 'The stream entry appended, null when nothing was.',
      },
    },
  },
  DeleteResult: {
    type: 'object',
    required: ['deleted', 'at'],
    additionalProperties: false,
    properties: {
      deleted: { type: 'boolean', description: 'False when there was no such document.' },
      at: { type: 'string', format: 'date-time', description: 'When it was deleted.' },
    },
  },
  RestoreRequest: {
    type: 'object',
    required: ['at'],
    properties: {
      at: {
        oneOf: [{ type: 'string' }, { type: 'integer' }],
        description: `The time to restore the document to. ${timeForms}`,
        examples: ['2026-11-27T10:00:00Z', '-30m', 1795773600000],
      },
    },
  },
  RestoreResult: {
    type: 'object',
    required: ['appended', 'id', 'asOf', 'exact'],
    additionalProperties: false,
    properties: {
      appended: {
        type: 'boolean',
        description: 'False when the document already showed that content.',
      },
      id: {
        oneOf: [ref('StreamId'), { type: 'null' }],
        description: 'The forward update appended, null when nothing was.',
      },
      asOf: {
        type: 'string',
        format: 'date-time',
        description:
          'The time the restored content is as of (earlier than asked for when not exact).',
      },
      exact: {
        type: 'boolean',
        description:
          'False when history that old was folded: the content is the nearest checkpoint before.',
      },
    },
  },
  HistoryBucket: {
    type: 'object',
    description:
      'Edits appended within one bucket of time: restoring to `at` gives the document after them.',
    required: ['at', 'upTo', 'entries', 'bytes'],
    additionalProperties: false,
    properties: {
      at: { type: 'integer', description: "The bucket's last edit (epoch ms)." },
      upTo: ref('StreamId'),
      entries: { type: 'integer', minimum: 1, description: 'Updates appended in the bucket.' },
      bytes: { type: 'integer', minimum: 0, description: 'Their size.' },
      checkpoint: { const: false },
    },
  },
  HistoryCheckpoint: {
    type: 'object',
    description:
      'A checkpoint: the document as of `upTo`, kept where the edits before it may be folded.',
    required: ['at', 'upTo', 'checkpoint'],
    additionalProperties: false,
    properties: {
      at: { type: 'integer', description: 'Time of `upTo` (epoch ms).' },
      upTo: ref('StreamId'),
      checkpoint: { const: true },
    },
  },
  HistoryListing: {
    type: 'object',
    required: ['versions', 'omitted'],
    additionalProperties: false,
    properties: {
      versions: {
        type: 'array',
        description: 'Ascending by `upTo`; the newest `limit` of them.',
        items: { oneOf: [ref('HistoryBucket'), ref('HistoryCheckpoint')] },
      },
      omitted: { type: 'integer', minimum: 0, description: 'Older versions left out by `limit`.' },
    },
  },
  Health: {
    type: 'object',
    required: ['status'],
    additionalProperties: false,
    properties: { status: { const: 'ok' } },
  },
  Ready: {
    type: 'object',
    required: ['status'],
    description:
      'Details (such as `connections`) only with full access to the operations endpoints.',
    properties: {
      status: { const: 'ready' },
      connections: { type: 'integer', minimum: 0, description: 'Sockets this node holds.' },
    },
  },
  NotReady: {
    type: 'object',
    required: ['status', 'reason'],
    properties: {
      status: { const: 'not ready' },
      reason: { type: 'string', examples: ['shutting down', 'redis reconnecting'] },
      connections: { type: 'integer', minimum: 0 },
    },
  },
}

// ---------------------------------------------------------------------------------------------
// Operations

const yjsUpdate = (description: string): Record<string, MediaType> => ({
  'application/octet-stream': {
    schema: { type: 'string', description },
  },
})

const readDocument: Operation = {
  operationId: 'readDocument',
  tags: ['documents'],
  summary: 'Read a document (now, or as it was at a time)',
  description:
    'The whole document as one Yjs update (v1 encoding): apply it to an empty `Y.Doc` ' +
    '(`Y.applyUpdate`). Any node answers; an unknown name answers an empty document. With ' +
    '`?at=` the document as it was then, from its history.',
  security: tokenSecurity,
  parameters: [
    docNameParameter,
    {
      name: 'at',
      in: 'query',
      required: false,
      description: `Read the document as it was at this time. ${timeForms}`,
      schema: { type: 'string' },
      examples: timeExamples,
    },
  ],
  responses: {
    200: {
      description: 'The document.',
      headers: {
        'x-streambed-up-to': upToHeader,
        'x-streambed-as-of': {
          description:
            'With `?at=`: the time the content is as of (earlier than asked for when not exact).',
          schema: { type: 'string', format: 'date-time' },
        },
        'x-streambed-exact': {
          description:
            'With `?at=`: `false` when history that old was folded and this is the nearest ' +
            'checkpoint before.',
          schema: { type: 'string', enum: ['true', 'false'] },
        },
      },
      content: yjsUpdate('A Yjs update (v1 encoding) holding the whole document.'),
    },
    ...errors(...DOC_ERRORS),
    404: errorResponse(404, 'With `?at=`: the document did not exist yet at that time.'),
  },
}

const appendUpdate: Operation = {
  operationId: 'appendUpdate',
  tags: ['documents'],
  summary: 'Append an update',
  description:
    'Appends one Yjs update to the document, as an edit from a connected client would be: ' +
    'every client of the document converges to it. What the document already has is stripped ' +
    'first. Needs write access.',
  security: tokenSecurity,
  parameters: [docNameParameter],
  requestBody: {
    description: 'One Yjs update (v1 encoding), at most `WS_MAX_MESSAGE_BYTES`.',
    required: true,
    content: yjsUpdate(
      'A Yjs update (`Y.encodeStateAsUpdate`, or one from a `Y.Doc` "update" event).',
    ),
  },
  responses: {
    200: { description: 'Appended, or nothing to append.', content: json(ref('AppendResult')) },
    ...errors(...DOC_ERRORS, 413),
  },
}

const deleteDocument: Operation = {
  operationId: 'deleteDocument',
  tags: ['documents'],
  summary: 'Delete a document everywhere',
  description:
    'Deletes its state in Redis, its stored state, its history and checkpoints (backups are ' +
    'separate). Its sockets on every node close with 4405, so that no open editor writes it ' +
    'back; the next client to connect starts a new, empty document of that name. Needs a write ' +
    'token with the claim `"delete": true` (anyone with `AUTH_MODE=none`).',
  security: tokenSecurity,
  parameters: [docNameParameter],
  responses: {
    200: { description: 'Deleted, or there was nothing.', content: json(ref('DeleteResult')) },
    ...errors(...DOC_ERRORS),
  },
}

const preflight = (path: string): Operation => ({
  operationId: `preflight${path}`,
  tags: ['documents'],
  summary: 'CORS preflight',
  description:
    'Answered for browser origins in `ALLOWED_ORIGINS` (or any with `ALLOWED_ORIGINS=*`); ' +
    'allowed origins get `access-control-allow-origin` on every answer of the API. Without ' +
    '`ALLOWED_ORIGINS` no CORS headers are sent.',
  security: noSecurity,
  parameters: [docNameParameter],
  responses: {
    204: {
      description: 'The origin may use the API.',
      headers: {
        'access-control-allow-methods': {
          description: 'GET, POST, DELETE, OPTIONS.',
          required: true,
          schema: { type: 'string' },
        },
        'access-control-allow-headers': {
          description: 'authorization, content-type.',
          required: true,
          schema: { type: 'string' },
        },
        'access-control-max-age': {
          description: 'Seconds the browser may cache this answer.',
          required: true,
          schema: { type: 'string', pattern: '^[0-9]+$' },
        },
        'access-control-allow-origin': {
          description: 'The origin, when `ALLOWED_ORIGINS` lets it in.',
          schema: { type: 'string' },
        },
      },
    },
    403: errorResponse(403, 'The `Origin` is not in `ALLOWED_ORIGINS`.'),
  },
})

const listHistory: Operation = {
  operationId: 'listHistory',
  tags: ['history'],
  summary: "List a document's versions",
  description:
    'The versions an application can offer to go back to: one per bucket of time with edits, ' +
    'and the checkpoints. Read any of them with `GET /docs/{name}?at=<at>`, or restore it.',
  security: tokenSecurity,
  parameters: [
    docNameParameter,
    {
      name: 'bucket',
      in: 'query',
      required: false,
      description: 'Edits within one bucket of this length make one version (default `1m`).',
      schema: { type: 'string', pattern: '^[0-9]+(\\.[0-9]+)?(ms|s|m|h|d)?$' },
      examples: { minute: { summary: 'one version per minute', value: '1m' } },
    },
    {
      name: 'limit',
      in: 'query',
      required: false,
      description: 'The newest versions listed at most (default 1000).',
      schema: { type: 'integer', minimum: 1 },
      examples: { hundred: { summary: 'the newest 100', value: '100' } },
    },
  ],
  responses: {
    200: { description: 'The versions.', content: json(ref('HistoryListing')) },
    ...errors(...DOC_ERRORS),
  },
}

const restoreDocument: Operation = {
  operationId: 'restoreDocument',
  tags: ['history'],
  summary: 'Restore a document to a time',
  description:
    'Writes the document as it was at a time back as a forward update: connected clients ' +
    'converge to it without reloading, and the edits it undoes stay in the history. The time ' +
    'comes from `?at=` or from the JSON body. Needs write access.',
  security: tokenSecurity,
  parameters: [
    docNameParameter,
    {
      name: 'at',
      in: 'query',
      required: false,
      description: `The time to restore to (else the body's \`at\`). ${timeForms}`,
      schema: { type: 'string' },
      examples: timeExamples,
    },
  ],
  requestBody: {
    description: 'The time, when `?at=` is not given.',
    required: false,
    content: json(ref('RestoreRequest')),
  },
  responses: {
    200: { description: 'Restored.', content: json(ref('RestoreResult')) },
    ...errors(...DOC_ERRORS, 413),
    404: errorResponse(404, 'The document did not exist yet at that time.'),
  },
}

const opsGet = (
  operationId: string,
  summary: string,
  description: string,
  responses: Record<string, Response>,
  security: readonly SecurityRequirement[] = noSecurity,
): PathItem => ({
  get: { operationId, tags: ['operations'], summary, description, security, responses },
})

export const openApiDocument: OpenApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'Streambed node HTTP API',
    version: '1.0.0',
    summary: 'Read, write, delete and restore Yjs documents over HTTP; health and metrics.',
    description:
      'Every server node answers this API on its WebSocket port; any node serves any document ' +
      '(no stickiness). The collaboration itself runs over WebSockets on the same port, ' +
      '`ws(s)://host:port/<name>?token=<jwt>`, with the y-websocket protocol (not described ' +
      'here). Errors are JSON `{"error": {"code", "message"}}` with a code of the catalogue. ' +
      'Document routes are limited to `HTTP_MAX_REQUESTS_PER_SECOND` per client address; with ' +
      '`ALLOWED_ORIGINS`, browsers on other origins are refused (403). With `DEMO=on` the node ' +
      'also serves the editor demo, a static page, at `/` and its files (GET and HEAD; not ' +
      'described here). Any other path or method answers 404 `NOT_FOUND`.',
  },
  tags: [
    { name: 'documents', description: 'A document as one Yjs update: read, append, delete.' },
    { name: 'history', description: 'Versions of a document; going back to one.' },
    { name: 'operations', description: 'Health, readiness, metrics and this description.' },
  ],
  paths: {
    '/docs/{name}': {
      get: readDocument,
      post: appendUpdate,
      delete: deleteDocument,
      options: preflight('Document'),
    },
    '/docs/{name}/history': { get: listHistory, options: preflight('History') },
    '/docs/{name}/restore': { post: restoreDocument, options: preflight('Restore') },
    '/healthz': opsGet('health', 'Liveness', 'Answers 200 while the process runs.', {
      200: { description: 'Alive.', content: json(ref('Health')) },
    }),
    '/readyz': opsGet(
      'readiness',
      'Readiness',
      'Ready when Redis (commands and pub/sub) is connected and the node is not draining; take ' +
        'the node out of the load balancer otherwise.',
      {
        200: { description: 'Ready.', content: json(ref('Ready')) },
        503: { description: 'Not ready, and why.', content: json(ref('NotReady')) },
      },
      [{}, { metricsToken: [] }],
    ),
    '/metrics': opsGet(
      'metrics',
      'Prometheus metrics',
      '`streambed_*` and process metrics in the Prometheus text format. With `METRICS_PORT` ' +
        'they are served on that port only (404 here); with `METRICS_TOKEN` they need it.',
      {
        200: {
          description: 'The Prometheus exposition.',
          content: { 'text/plain': { schema: { type: 'string' } } },
        },
        401: errorResponse(401, '`METRICS_TOKEN` is set and was not sent.'),
        404: errorResponse(404, '`METRICS_PORT` is set: the metrics are served there.'),
        500: errorResponse(500, 'The metrics could not be collected.'),
      },
      [{}, { metricsToken: [] }],
    ),
    [OPENAPI_PATH]: opsGet(
      'openapi',
      'This description',
      'The OpenAPI 3.1 description of this API.',
      {
        200: {
          description: 'This document.',
          content: json({
            type: 'object',
            required: ['openapi', 'info', 'paths'],
            properties: { openapi: { const: '3.1.0' } },
          }),
        },
      },
    ),
  },
  components: { schemas, securitySchemes },
}
