/** Test-only (not built): a SocketLike that records what a connection sends. */
import { type ClientMessage, decodeMessage } from '@streambed/protocol'
import { silentLogger } from '@streambed/common'
import { Connection, type ConnectionOptions, type SocketLike } from '../connection.js'

export class FakeSocket implements SocketLike {
  readonly remoteAddress = '127.0.0.1'
  readonly sent: Uint8Array[] = []
  ended: { code: number; reason: string } | null = null
  /** While false, `send` reports the messages as dropped (a full send buffer). */
  accepting = true
  /** Runs when the server ends the socket, as uWS's close event does. */
  onEnd: (() => void) | undefined

  send(messages: readonly Uint8Array[]): boolean {
    if (this.ended) return true
    this.sent.push(...messages)
    return this.accepting
  }

  end(code: number, reason: string): void {
    if (this.ended) return
    this.ended = { code, reason }
    this.onEnd?.()
  }

  /** Every message sent so far, decoded (server messages share the client format). */
  messages(): ClientMessage[] {
    return this.sent.map((m) => decodeMessage(m))
  }

  /** The updates of sync step 2 and update messages sent so far. */
  updates(): Uint8Array[] {
    return this.messages().flatMap((m) =>
      m.kind === 'sync-step2' || m.kind === 'sync-update' ? [m.update] : [],
    )
  }
}

/** A writing connection on `doc` over a FakeSocket, with generous buffer limits. */
export const fakeConnection = (
  over: Partial<ConnectionOptions> & { doc?: string } = {},
): { conn: Connection; socket: FakeSocket } => {
  const socket = new FakeSocket()
  const conn = new Connection({
    id: 1,
    originPrefix: 'n~t',
    doc: 'd',
    grant: { access: 'write', mayDelete: false, subject: undefined },
    socket,
    logger: silentLogger(),
    maxBufferedEntries: 100,
    maxBufferedBytes: 1 << 20,
    onServerClose: () => undefined,
    ...over,
  })
  return { conn, socket }
}
