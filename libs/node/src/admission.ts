import { AppError } from '@streambed/common'
import { parseDocName } from '@streambed/protocol'
import type { Authenticator, Grant } from './auth.js'
import type { RevocationGuard } from './revocation-guard.js'

export interface AdmissionOptions {
  authenticator: Authenticator
  /** Revoked tokens are refused (jwt mode); null when there are no tokens to revoke. */
  revocations: RevocationGuard | null
  /**
   * Browser origins that may connect (the Origin header): a list, '*' for any (with CORS headers
   * for all), or null when unset (any may open sockets; the HTTP API sends no CORS headers).
   */
  allowedOrigins: readonly string[] | '*' | null
  /** Sockets this node holds, and of one document. */
  connections: () => number
  connectionsOf: (doc: string) => number
  maxConnections: number
  maxConnectionsPerDoc: number
}

export interface Admitted {
  readonly doc: string
  readonly grant: Grant
}

export interface Admission {
  /** A socket for `path` with `token` from `origin` ('' when the client sent none). */
  socket(path: string, token: string | undefined, origin: string): Promise<Admitted>
  /** An HTTP request to the document API. */
  request(path: string, token: string | undefined, origin: string): Promise<Admitted>
  /** Whether a browser on `origin` may use this node ('' — not a browser — may). */
  originAllowed(origin: string): boolean
  /** The Access-Control-Allow-Origin for `origin`, or null (no CORS headers). */
  corsOrigin(origin: string): string | null
}

/**
 * Who may open a socket or call the document API: an allowed origin, a valid document name, a
 * token granting the document and not revoked, and (sockets) room on the node and the document.
 * Throws the AppError to answer with: FORBIDDEN, BAD_DOC_NAME, UNAUTHORIZED, TOO_MANY_CONNECTIONS.
 */
export const createAdmission = (opts: AdmissionOptions): Admission => {
  const { allowedOrigins } = opts
  const originAllowed = (origin: string) =>
    origin === '' ||
    allowedOrigins === null ||
    allowedOrigins === '*' ||
    allowedOrigins.includes(origin)
  const admit = async (path: string, token: string | undefined, origin: string) => {
    if (!originAllowed(origin))
      throw new AppError('FORBIDDEN', `origin ${origin} is not in ALLOWED_ORIGINS`)
    const doc = parseDocName(path)
    const grant = await opts.authenticator.authorize(token, doc)
    await opts.revocations?.check(grant, doc)
    return { doc, grant }
  }
  return {
    originAllowed,
    corsOrigin: (origin) =>
      origin !== '' && allowedOrigins !== null && originAllowed(origin) ? origin : null,
    request: admit,
    socket: async (path, token, origin) => {
      if (opts.connections() >= opts.maxConnections)
        throw new AppError(
          'TOO_MANY_CONNECTIONS',
          `node holds MAX_CONNECTIONS (${opts.maxConnections}) sockets`,
        )
      const admitted = await admit(path, token, origin)
      if (opts.connectionsOf(admitted.doc) >= opts.maxConnectionsPerDoc)
        throw new AppError(
          'TOO_MANY_CONNECTIONS',
          `document has MAX_CONNECTIONS_PER_DOC (${opts.maxConnectionsPerDoc}) sockets on this node`,
        )
      return admitted
    },
  }
}
