import { createServer, connect, type Server, type Socket } from 'node:net'

export interface Balancer {
  readonly port: number
  readonly url: string
  /** Replaces the backends (ports on 127.0.0.1). */
  setBackends(ports: readonly number[]): void
  /** Destroys every proxied connection (clients see the connection drop). */
  dropConnections(): void
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/**
 * A round-robin TCP load balancer on loopback, like one an operator puts in front of server nodes:
 * no stickiness; a backend that refuses the connection is skipped for the next one.
 */
export const startBalancer = async (backends: readonly number[]): Promise<Balancer> => {
  let ports = [...backends]
  let next = 0
  const sockets = new Set<Socket>()
  const track = (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  }
  const server: Server = createServer((client) => {
    track(client)
    client.pause()
    const tryBackend = (attempt: number) => {
      if (ports.length === 0 || attempt >= ports.length) {
        client.destroy()
        return
      }
      const port = ports[next++ % ports.length] as number
      const upstream = connect(port, '127.0.0.1')
      upstream.once('connect', () => {
        track(upstream)
        upstream.on('error', () => client.destroy())
        client.on('error', () => upstream.destroy())
        client.pipe(upstream)
        upstream.pipe(client)
        client.on('close', () => upstream.destroy())
        upstream.on('close', () => client.destroy())
        client.resume()
      })
      upstream.once('error', () => {
        if (!upstream.readyState.startsWith('open')) tryBackend(attempt + 1)
      })
    }
    tryBackend(0)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  const close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy()
      server.close(() => resolve())
    })
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    setBackends: (p) => {
      ports = [...p]
    },
    dropConnections: () => {
      for (const s of sockets) s.destroy()
    },
    close,
    [Symbol.asyncDispose]: close,
  }
}
