import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js'
import { AppError, answerOps, type OpsEndpoints, opsPaths } from '@streambed/common'
import { mergeAll } from '@streambed/protocol'
import { partsOf } from '@streambed/streams'
import type { Grant } from './auth.js'
import { createReply, readBody, type Reply, tokenFrom } from './http.js'
import type { NodeRuntime } from './runtime.js'

export interface HttpApiOptions {
  runtime: NodeRuntime
  ops: OpsEndpoints
  authorize: (path: string, token: string | undefined) => Promise<{ doc: string; grant: Grant }>
  onHttpError: (err: unknown, status: number) => void
  /** Largest accepted request body. */
  maxBodyBytes: number
}

/**
 * The HTTP routes of a node, on the WebSocket port: the operations endpoints (answerOps) and the
 * document API under `/docs/<name>` (GET: the document as one Yjs update; POST: append an update),
 * with the same authorisation as sockets. Errors become statuses in `Reply.error` only.
 */
export const mountHttpApi = (app: TemplatedApp, opts: HttpApiOptions): void => {
  const { runtime } = opts
  const route = (
    res: HttpResponse,
    req: HttpRequest,
    handle: (reply: Reply, path: string, token: string | undefined) => Promise<void>,
  ) => {
    const path = req.getUrl().slice('/docs/'.length)
    const token = tokenFrom(req.getHeader('authorization'), req.getQuery())
    const reply = createReply(res, opts.onHttpError)
    handle(reply, path, token).catch((err: unknown) => reply.error(err))
  }

  for (const path of opsPaths) {
    app.get(path, (res) => {
      const reply = createReply(res, opts.onHttpError)
      void answerOps('GET', path, opts.ops).then((a) => {
        if (a) reply.send(a.status, a.body, { 'content-type': a.contentType })
      })
    })
  }

  app.get('/docs/*', (res, req) =>
    route(res, req, async (reply, path, token) => {
      const { doc } = await opts.authorize(path, token)
      const read = await runtime.readState(doc)
      reply.send(200, mergeAll(partsOf(read)), {
        'content-type': 'application/octet-stream',
        'x-streambed-up-to': read.upTo,
      })
    }),
  )

  app.post('/docs/*', (res, req) => {
    // The body is read from the start of the handler: uWS delivers it only to a synchronous onData.
    const body = readBody(res, opts.maxBodyBytes)
    // Handled below after authorisation; marked handled now in case it fails first (too large).
    body.catch(() => undefined)
    route(res, req, async (reply, path, token) => {
      const { doc, grant } = await opts.authorize(path, token)
      if (grant.access !== 'write') throw new AppError('FORBIDDEN', 'token grants read access only')
      const result = await runtime.appendUpdate(doc, await body)
      reply.json(200, { appended: result !== null, id: result?.id ?? null })
    })
  })

  app.any('/*', (res, req) => {
    const what = `${req.getMethod().toUpperCase()} ${req.getUrl()}`
    createReply(res, opts.onHttpError).error(new AppError('NOT_FOUND', `no route for ${what}`))
  })
}
