import type { us_listen_socket, WebSocket } from 'uWebSockets.js'
import { AppError, describeError, type Logger } from '@streambed/common'
import { encodePermissionDenied, parseDocName } from '@streambed/protocol'
import type { Authenticator, Grant } from './auth.js'
import type { Connection } from './connection.js'
import { createReply, readBody, tokenFrom } from './http.js'
import type { NodeMetrics } from './metrics.js'
import type { NodeRuntime } from './runtime.js'
import { uWS } from './uws.js'
import { UwsSocket } from './uws-socket.js'
import { mergedOf } from './read-path.js'

export interface ServerNodeOptions {
  runtime: NodeRuntime
  authenticator: Authenticator
  metrics: NodeMetrics
  logger: Logger
  host: string
  /** 0 picks a free port (see `ServerNode.port`). */
  port: number
  /** Largest accepted WebSocket message or HTTP body. */
  maxMessageBytes: number
  /** Send buffer per socket above which the socket is closed (4508). */
  maxBackpressureBytes: number
  /** Seconds without traffic before uWS pings, then closes, a socket. */
  idleTimeoutS: number
  /** Whether the node can serve (Redis connected and so on); shown on /readyz. */
  readiness: () => { ready: boolean; reason?: string }
}

export interface ServerNode {
  readonly port: number
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

interface SocketData {
  doc: string | null
  grant: Grant | null
  error: unknown
  conn: Connection | null
  socket: UwsSocket<SocketData> | null
  closed: boolean
  remoteAddress: string
}

export const startServerNode = async (opts: ServerNodeOptions): Promise<ServerNode> => {
  const { runtime, authenticator, metrics, logger } = opts
  const app = uWS.App()
  let draining = false

  const onHttpError = (err: unknown, status: number) => {
    metrics.errors.inc({ code: describeError(err).code })
    if (status >= 500) logger.warn({ err }, 'HTTP request failed')
  }

  const authorize = async (path: string, token: string | undefined) => {
    const doc = parseDocName(path)
    return { doc, grant: await authenticator.authorize(token, doc) }
  }

  app.ws<SocketData>('/*', {
    // uWS drops a connection without a close frame past its cap; up to twice the limit, the
    // message handler closes with 4413 and a reason instead.
    maxPayloadLength: opts.maxMessageBytes * 2,
    // Our limit is enforced in `send` below; uWS's own, higher, limit only guarantees that the
    // 4508 close frame still fits behind the buffered data (uWS drops frames past its limit).
    maxBackpressure: opts.maxBackpressureBytes + 2 * opts.maxMessageBytes,
    closeOnBackpressureLimit: 0,
    idleTimeout: opts.idleTimeoutS,
    sendPingsAutomatically: true,
    compression: uWS.DISABLED,
    upgrade: (res, req, context) => {
      const url = req.getUrl()
      const token = tokenFrom(req.getHeader('authorization'), req.getQuery())
      const key = req.getHeader('sec-websocket-key')
      const protocol = req.getHeader('sec-websocket-protocol')
      const extensions = req.getHeader('sec-websocket-extensions')
      const remoteAddress = Buffer.from(res.getRemoteAddressAsText()).toString()
      const reply = createReply(res, onHttpError)
      const state = opts.readiness()
      if (draining || !state.ready) {
        reply.error(
          new AppError(
            draining ? 'SHUTTING_DOWN' : 'REDIS_UNAVAILABLE',
            state.reason ?? 'node not ready',
          ),
        )
        return
      }
      // Rejections are delivered after the upgrade, as close codes a WebSocket client can see.
      void authorize(url.slice(1), token)
        .then(
          ({ doc, grant }) => ({ doc, grant, error: null }),
          (error: unknown) => ({ doc: null, grant: null, error }),
        )
        .then((auth) => {
          if (reply.aborted) return
          res.cork(() => {
            res.upgrade<SocketData>(
              { ...auth, conn: null, socket: null, closed: false, remoteAddress },
              key,
              protocol,
              extensions,
              context,
            )
          })
        })
    },
    open: (ws: WebSocket<SocketData>) => {
      const data = ws.getUserData()
      if (data.error !== null || data.doc === null || data.grant === null) {
        const d = describeError(
          data.error ?? new AppError('INTERNAL', 'upgrade without a document'),
        )
        metrics.errors.inc({ code: d.code })
        metrics.closes.inc({ code: String(d.closeCode) })
        logger.info(
          { code: d.code, reason: d.message, remoteAddress: data.remoteAddress },
          'rejected connection',
        )
        if (d.code === 'UNAUTHORIZED' || d.code === 'FORBIDDEN')
          ws.send(encodePermissionDenied(d.message), true)
        ws.end(d.closeCode, d.message.slice(0, 123))
        return
      }
      const socket = new UwsSocket(ws, data, {
        maxBackpressureBytes: opts.maxBackpressureBytes,
        maxStallMs: opts.idleTimeoutS * 1000,
      })
      data.socket = socket
      data.conn = runtime.open(socket, data.doc, data.grant)
    },
    message: (ws, message) => {
      const { conn } = ws.getUserData()
      if (!conn) return
      if (message.byteLength > opts.maxMessageBytes) {
        runtime.reject(
          conn,
          new AppError(
            'TOO_LARGE',
            `message of ${message.byteLength} bytes exceeds WS_MAX_MESSAGE_BYTES (${opts.maxMessageBytes})`,
          ),
        )
        return
      }
      // The ArrayBuffer is only valid during this callback: copy it.
      runtime.message(conn, new Uint8Array(message.slice(0)))
    },
    drain: (ws) => {
      ws.getUserData().socket?.drained()
    },
    close: (ws) => {
      const data = ws.getUserData()
      data.closed = true
      if (data.conn) runtime.closed(data.conn)
    },
  })

  app.get('/healthz', (res) => {
    createReply(res, onHttpError).json(200, { status: 'ok' })
  })

  app.get('/readyz', (res) => {
    const state = opts.readiness()
    const ready = state.ready && !draining
    createReply(res, onHttpError).json(ready ? 200 : 503, {
      status: ready ? 'ready' : 'not ready',
      ...(ready ? {} : { reason: draining ? 'shutting down' : state.reason }),
      connections: runtime.connectionCount,
    })
  })

  app.get('/metrics', (res) => {
    const reply = createReply(res, onHttpError)
    metrics.registry.metrics().then(
      (text) => reply.send(200, text, { 'content-type': metrics.registry.contentType }),
      (err: unknown) => reply.error(err),
    )
  })

  app.get('/docs/*', (res, req) => {
    const path = req.getUrl().slice('/docs/'.length)
    const token = tokenFrom(req.getHeader('authorization'), req.getQuery())
    const reply = createReply(res, onHttpError)
    void (async () => {
      try {
        const { doc } = await authorize(path, token)
        const read = await runtime.readState(doc)
        reply.send(200, mergedOf(read), {
          'content-type': 'application/octet-stream',
          'x-streambed-up-to': read.upTo,
        })
      } catch (err) {
        reply.error(err)
      }
    })()
  })

  app.post('/docs/*', (res, req) => {
    const path = req.getUrl().slice('/docs/'.length)
    const token = tokenFrom(req.getHeader('authorization'), req.getQuery())
    const reply = createReply(res, onHttpError)
    const body = readBody(res, opts.maxMessageBytes)
    void (async () => {
      try {
        const { doc, grant } = await authorize(path, token)
        if (grant.access !== 'write')
          throw new AppError('FORBIDDEN', 'token grants read access only')
        const result = await runtime.appendUpdate(doc, await body)
        reply.json(200, { appended: result !== null, id: result?.id ?? null })
      } catch (err) {
        reply.error(err)
      }
    })()
  })

  app.any('/*', (res, req) => {
    createReply(res, onHttpError).error(
      new AppError('NOT_FOUND', `no route for ${req.getMethod().toUpperCase()} ${req.getUrl()}`),
    )
  })

  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen(opts.host, opts.port, (ls) => {
      if (ls) resolve(ls)
      else
        reject(
          new AppError(
            'CONFIG',
            `cannot listen on ${opts.host}:${opts.port} (port in use or not permitted); set PORT/HOST`,
          ),
        )
    })
  })
  const port = uWS.us_socket_local_port(listenSocket)

  let closing: Promise<void> | undefined
  const close = () => {
    closing ??= (async () => {
      draining = true
      uWS.us_listen_socket_close(listenSocket)
      await runtime.close()
    })()
    return closing
  }
  return { port, close, [Symbol.asyncDispose]: close }
}
