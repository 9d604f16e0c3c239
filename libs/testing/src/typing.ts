/** Clients that type numbered entries until stopped. */
import type { TestClient } from './clients.js'

export interface Typist {
  readonly client: TestClient
  readonly label: string
  /** Entries typed so far. */
  readonly typed: number
  /** Times the client's connection closed while typing. */
  readonly disconnects: number
  stop(): void
}

/** Appends `<label>:<n>` to the array `log` every `everyMs` until stopped. */
export const startTyping = (client: TestClient, label: string, everyMs = 20): Typist => {
  let n = 0
  let disconnects = 0
  const log = client.doc.getArray<string>('log')
  const onClose = () => disconnects++
  client.provider.on('connection-close', onClose)
  const timer = setInterval(() => {
    log.push([`${label}:${n++}`])
  }, everyMs)
  return {
    client,
    label,
    get typed() {
      return n
    },
    get disconnects() {
      return disconnects
    },
    stop: () => {
      clearInterval(timer)
      client.provider.off('connection-close', onClose)
    },
  }
}

/** Every entry each typist typed, in a set. */
export const expectedEntries = (typists: readonly Typist[]): Set<string> => {
  const out = new Set<string>()
  for (const t of typists) for (let i = 0; i < t.typed; i++) out.add(`${t.label}:${i}`)
  return out
}

/** Entries typed that `client` does not have. */
export const missingFrom = (client: TestClient, expected: Set<string>): string[] => {
  const have = new Set(client.doc.getArray<string>('log').toArray())
  return [...expected].filter((e) => !have.has(e))
}
