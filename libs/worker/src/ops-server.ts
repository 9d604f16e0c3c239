import { createServer } from 'node:http'
import { answerOps, type Logger, type OpsAnswer, type OpsEndpoints } from '@streambed/common'

export interface OpsServerOptions {
  host: string
  /** 0 picks a free port (see `OpsServer.port`). */
  port: number
  ops: OpsEndpoints
  logger: Logger
}

export interface OpsServer {
  readonly port: number
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

const notFound = (method: string, url: string): OpsAnswer => ({
  status: 404,
  contentType: 'application/json',
  body: JSON.stringify({ error: { code: 'NOT_FOUND', message: `no route for ${method} ${url}` } }),
})

/** A node:http server for `GET /healthz`, `/readyz`, `/metrics` (answerOps); 404 JSON otherwise. */
export const startOpsServer = async (opts: OpsServerOptions): Promise<OpsServer> => {
  const server = createServer((req, res) => {
    const method = req.method ?? 'GET'
    const url = req.url ?? '/'
    answerOps(method, url, opts.ops)
      .then((answer) => {
        const a = answer ?? notFound(method, url)
        res.writeHead(a.status, { 'content-type': a.contentType })
        res.end(a.body)
      })
      .catch((err: unknown) => {
        opts.logger.warn({ err, url }, 'operations request failed')
        res.destroy()
      })
  })
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, opts.host, () => {
      const address = server.address()
      resolve(typeof address === 'object' && address ? address.port : opts.port)
    })
  })
  const close = () => new Promise<void>((resolve) => server.close(() => resolve()))
  return { port, close, [Symbol.asyncDispose]: close }
}
