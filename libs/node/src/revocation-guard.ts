import { AppError, CloseCode, type Logger } from '@streambed/common'
import {
  type Keys,
  type Redis,
  type Revocation,
  type Revocations,
  revokes,
} from '@streambed/streams'
import type { Grant } from './auth.js'
import type { Connection } from './connection.js'

export interface RevocationGuardOptions {
  revocations: Revocations
  /**
   * The node's pub/sub connection. Revocations come on a sharded channel like the doorbells: ioredis
   * tracks plain and sharded subscriptions of one connection as one set, and the SUNSUBSCRIBE of a
   * node's last document (whose count leaves out plain channels) would drop a plain SUBSCRIBE
   * from it: the next revocation then arrived as a "command queue state error", unhandled.
   */
  subscriber: Redis
  keys: Keys
  logger: Logger
  /** The connections of this node, to close those a revocation names. */
  connections: () => Iterable<Connection>
}

const factsOf = (grant: Grant, doc: string) => ({
  subject: grant.subject,
  tokenId: grant.tokenId,
  doc,
})

/**
 * Revoked tokens (`streambed revoke`): refused when a socket or request presents one, and their
 * sockets on this node closed (4411) when the revocation is announced. A revocation announced
 * while this node's subscriber was away is caught by checking every connection on reconnect.
 */
export class RevocationGuard {
  private readonly opts: RevocationGuardOptions
  private connectedOnce = false
  private readonly onMessage = (channel: Buffer, message: Buffer) => {
    if (channel.toString('utf8') !== this.opts.keys.revocations) return
    const revocation = this.opts.revocations.decode(message.toString('utf8'))
    if (revocation) this.closeRevoked(revocation)
  }
  private readonly onReady = () => {
    if (this.connectedOnce) void this.recheck()
    this.connectedOnce = true
  }

  constructor(opts: RevocationGuardOptions) {
    this.opts = opts
  }

  async start(): Promise<void> {
    const { subscriber, keys } = this.opts
    // The Buffer event: a listener of 'smessage' would make ioredis decode every doorbell to text.
    subscriber.on('smessageBuffer', this.onMessage)
    subscriber.on('ready', this.onReady)
    if (subscriber.status === 'ready') this.connectedOnce = true
    await subscriber.ssubscribe(keys.revocations)
  }

  /** Throws UNAUTHORIZED when a revocation names `grant` (for `doc`). */
  async check(grant: Grant, doc: string): Promise<void> {
    const at = await this.opts.revocations.revokedAt(factsOf(grant, doc))
    if (at !== null && (grant.issuedAtMs === undefined || grant.issuedAtMs <= at)) {
      throw new AppError('UNAUTHORIZED', 'token revoked; get a new one')
    }
  }

  private closeRevoked(revocation: Revocation): void {
    let closed = 0
    for (const conn of this.opts.connections()) {
      if (revokes(revocation, factsOf(conn.grant, conn.doc), conn.grant.issuedAtMs)) {
        conn.close(CloseCode.tokenRevoked, 'token revoked')
        closed++
      }
    }
    if (closed > 0) this.opts.logger.info({ ...revocation, closed }, 'closed revoked connections')
  }

  /** Checks every connection against the stored revocations. */
  private async recheck(): Promise<void> {
    for (const conn of [...this.opts.connections()]) {
      try {
        await this.check(conn.grant, conn.doc)
      } catch (err) {
        if (err instanceof AppError && err.code === 'UNAUTHORIZED')
          conn.close(CloseCode.tokenRevoked, 'token revoked')
        else this.opts.logger.warn({ err }, 'revocation check failed')
      }
    }
  }

  async close(): Promise<void> {
    const { subscriber, keys } = this.opts
    subscriber.off('smessageBuffer', this.onMessage)
    subscriber.off('ready', this.onReady)
    await subscriber.sunsubscribe(keys.revocations).catch(() => undefined)
  }
}
