/**
 * The connection badge as a pure state machine over the y-websocket provider's events, and what
 * each close code means (the README's close-code table, in words for the person at the editor).
 */

/** Close codes a node (or the browser) reports, with a few words each. */
export const closeMeanings: Readonly<Record<number, string>> = {
  1000: 'closed',
  1001: 'node shutting down',
  1005: 'closed without a code',
  1006: 'connection lost',
  1011: 'server error',
  4400: 'bad message',
  4401: 'unauthorized: token missing or invalid',
  4403: 'forbidden: the token does not grant this document',
  4404: 'bad document name',
  4405: 'document deleted',
  4410: 'token expired',
  4411: 'token revoked',
  4413: 'message too large',
  4500: 'internal error',
  4503: 'node or storage unavailable',
  4508: 'reading too slowly',
  4509: 'node lost track of the document',
  4529: 'too many messages',
}

/** `4405 document deleted`, with the node's reason when it gives more than the code says. */
export const describeClose = (code: number | null, reason = ''): string => {
  if (code === null) return 'no answer from the node'
  const meaning = closeMeanings[code] ?? 'closed'
  const more = reason.trim()
  return more && more !== meaning ? `${code} ${meaning} (${more})` : `${code} ${meaning}`
}

export type BadgeState = 'connecting' | 'connected' | 'synced' | 'disconnected' | 'stopped'

export interface Badge {
  readonly state: BadgeState
  readonly text: string
  /** The last close, described, while it explains the state (null once synced again). */
  readonly lastClose: string | null
}

export type ProviderEvent =
  | { readonly kind: 'status'; readonly status: 'connecting' | 'connected' | 'disconnected' }
  | { readonly kind: 'sync'; readonly synced: boolean }
  /** Every close; `code` null when the client closed it (no message for 30 s). */
  | { readonly kind: 'close'; readonly code: number | null; readonly reason: string }
  /** A close y-websocket will not retry (4400-4499): the server refused for good. */
  | { readonly kind: 'stopped'; readonly code: number; readonly reason: string }

export const initialBadge: Badge = { state: 'connecting', text: 'connecting…', lastClose: null }

export const badgeAfter = (badge: Badge, event: ProviderEvent): Badge => {
  // A refused connection stays refused until the page reconnects (a new badge).
  if (badge.state === 'stopped') return badge
  switch (event.kind) {
    case 'status':
      if (event.status === 'connecting') {
        const text = badge.lastClose ? `reconnecting… (${badge.lastClose})` : 'connecting…'
        return { ...badge, state: 'connecting', text }
      }
      if (event.status === 'connected')
        return { ...badge, state: 'connected', text: 'connected, syncing…' }
      return {
        ...badge,
        state: 'disconnected',
        text: badge.lastClose ? `disconnected: ${badge.lastClose}` : 'disconnected',
      }
    case 'sync':
      // `false` comes with a close or a reconnect, which say more.
      return event.synced ? { state: 'synced', text: 'connected · synced', lastClose: null } : badge
    case 'close': {
      const lastClose = describeClose(event.code, event.reason)
      return { state: 'disconnected', text: `disconnected: ${lastClose}`, lastClose }
    }
    case 'stopped': {
      const lastClose = describeClose(event.code, event.reason)
      return { state: 'stopped', text: `disconnected: ${lastClose}`, lastClose }
    }
  }
}
