import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

export interface TestClient {
  readonly doc: Y.Doc
  readonly provider: WebsocketProvider
  /** Resolves when the provider is connected and synced (immediately if it already is). */
  synced(timeoutMs?: number): Promise<void>
  destroy(): void
  [Symbol.dispose](): void
}

/**
 * A real y-websocket client in Node (the `ws` package as WebSocket), with BroadcastChannel off so
 * clients in one test process only ever talk through the server.
 */
export const connectClient = (
  serverUrl: string,
  docName: string,
  opts: {
    params?: Record<string, string>
    doc?: Y.Doc
    maxBackoffTime?: number
    connect?: boolean
  } = {},
): TestClient => {
  const doc = opts.doc ?? new Y.Doc()
  const provider = new WebsocketProvider(serverUrl, docName, doc, {
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    disableBc: true,
    params: opts.params ?? {},
    maxBackoffTime: opts.maxBackoffTime ?? 500,
    connect: opts.connect ?? true,
  })
  const destroy = () => {
    provider.destroy()
    doc.destroy()
  }
  return {
    doc,
    provider,
    synced: (timeoutMs = 15_000) =>
      new Promise<void>((resolve, reject) => {
        if (provider.synced && provider.wsconnected) return resolve()
        const timer = setTimeout(() => {
          provider.off('sync', onSync)
          reject(new Error(`client for ${docName} not synced after ${timeoutMs} ms`))
        }, timeoutMs)
        const onSync = (isSynced: boolean) => {
          if (!isSynced) return
          clearTimeout(timer)
          provider.off('sync', onSync)
          resolve()
        }
        provider.on('sync', onSync)
      }),
    destroy,
    [Symbol.dispose]: destroy,
  }
}

export type RootKind = 'text' | 'map' | 'array' | 'xml'

/**
 * The content of `doc`'s root types after a round trip through `encodeStateAsUpdate` into a fresh
 * document: equal results mean the states converged. Root types must be named, since a document
 * only knows the types of roots it created itself.
 */
export const docContent = (
  doc: Y.Doc,
  roots: Record<string, RootKind> = { text: 'text', map: 'map', array: 'array' },
): Record<string, unknown> => {
  const fresh = new Y.Doc()
  Y.applyUpdate(fresh, Y.encodeStateAsUpdate(doc))
  const out: Record<string, unknown> = {}
  for (const [name, kind] of Object.entries(roots)) {
    out[name] =
      kind === 'text'
        ? fresh.getText(name).toString()
        : kind === 'map'
          ? fresh.getMap(name).toJSON()
          : kind === 'array'
            ? fresh.getArray(name).toJSON()
            : fresh.getXmlFragment(name).toString()
  }
  fresh.destroy()
  return out
}
