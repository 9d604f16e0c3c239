import type { HttpResponse } from 'uWebSockets.js'
import { AppError, describeError } from '@streambed/common'

/**
 * Helpers for uWebSockets.js HTTP handlers: an abort-aware response wrapper (uWS forbids touching
 * an aborted response), body reading with a size limit, and the single error-to-HTTP translation.
 */
export interface Reply {
  readonly aborted: boolean
  send(status: number, body: string | Uint8Array, headers?: Record<string, string>): void
  json(status: number, value: unknown, headers?: Record<string, string>): void
  error(err: unknown, headers?: Record<string, string>): void
}

const statusText: Record<number, string> = {
  200: 'OK',
  204: 'No Content',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
}

/** `always` headers go on every response (CORS). */
export const createReply = (
  res: HttpResponse,
  onError: (err: unknown, status: number) => void,
  always: Record<string, string> = {},
): Reply => {
  let aborted = false
  res.onAborted(() => {
    aborted = true
  })
  const reply: Reply = {
    get aborted() {
      return aborted
    },
    send(status, body, headers = {}) {
      if (aborted) return
      aborted = true
      res.cork(() => {
        res.writeStatus(`${status} ${statusText[status] ?? ''}`.trim())
        for (const [k, v] of Object.entries({ ...always, ...headers })) res.writeHeader(k, v)
        res.end(body)
      })
    },
    json(status, value, headers = {}) {
      reply.send(status, JSON.stringify(value), { 'content-type': 'application/json', ...headers })
    },
    error(err, headers = {}) {
      const d = describeError(err)
      onError(err, d.httpStatus)
      reply.json(d.httpStatus, { error: { code: d.code, message: d.message } }, headers)
    },
  }
  return reply
}

/** Reads the request body; rejects with TOO_LARGE past `maxBytes`. Call synchronously in the handler. */
export const readBody = (res: HttpResponse, maxBytes: number): Promise<Uint8Array> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let failed = false
    res.onData((chunk, isLast) => {
      if (failed) return
      size += chunk.byteLength
      if (size > maxBytes) {
        failed = true
        reject(new AppError('TOO_LARGE', `request body larger than ${maxBytes} bytes`))
        return
      }
      // uWS reuses the chunk's memory after this callback: copy it.
      chunks.push(Buffer.from(new Uint8Array(chunk)))
      if (isLast) resolve(Buffer.concat(chunks))
    })
  })

/** `Authorization: Bearer <t>` or `?token=<t>`. */
export const tokenFrom = (authorization: string, query: string): string | undefined => {
  const bearer = /^Bearer\s+(\S+)$/i.exec(authorization)
  if (bearer?.[1]) return bearer[1]
  return new URLSearchParams(query).get('token') ?? undefined
}
