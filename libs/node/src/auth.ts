import { createRemoteJWKSet, importSPKI, jwtVerify, type JWTPayload } from 'jose'
import { AppError } from '@streambed/common'

export type Access = 'read' | 'write'

export interface Grant {
  readonly access: Access
  /** The token may delete the document (`"delete": true` claim; every caller without auth). */
  readonly mayDelete: boolean
  /** `sub` claim of the token (logs, revocation, awareness ownership). */
  readonly subject: string | undefined
  /** The token's `exp` in ms: its socket is closed then (4410). */
  readonly expiresAtMs?: number
  /** The token's `iat` in ms: revocations at or after it refuse the token. */
  readonly issuedAtMs?: number
  /** The token's `jti`: `streambed revoke --token-id` names it. */
  readonly tokenId?: string
}

export interface Authenticator {
  /** Resolves the access `token` grants to `doc`; throws UNAUTHORIZED or FORBIDDEN. */
  authorize(token: string | undefined, doc: string): Promise<Grant>
}

export type AuthOptions =
  | { mode: 'none' }
  | {
      mode: 'jwt'
      /** HS256/384/512 shared secret. */
      secret?: string
      /** SPKI PEM public key (RS*, PS*, ES*, EdDSA). */
      publicKey?: string
      /** Algorithm of `publicKey`, e.g. RS256 or ES256. */
      publicKeyAlg?: string
      /** JWKS endpoint. */
      jwksUrl?: string
      issuer?: string
      audience?: string
    }

/**
 * Token claims understood by Streambed:
 *   docs:   string[]  names the token grants; an entry ending in `*` grants every name starting
 *                     with what precedes it (`team-1/*`), `*` alone grants all
 *   doc:    string    shorthand for a single name
 *   access: "read" | "write"   default "write"
 *   delete: boolean   the token may also delete the documents it grants (DELETE /docs/<name>)
 */
export const matchesDoc = (patterns: readonly string[], doc: string): boolean =>
  patterns.some((p) => (p.endsWith('*') ? doc.startsWith(p.slice(0, -1)) : p === doc))

const grantFromClaims = (claims: JWTPayload, doc: string): Grant => {
  const patterns: string[] = []
  if (typeof claims.doc === 'string') patterns.push(claims.doc)
  if (Array.isArray(claims.docs))
    for (const p of claims.docs) if (typeof p === 'string') patterns.push(p)
  if (patterns.length === 0) throw new AppError('FORBIDDEN', 'token has no "docs" or "doc" claim')
  if (!matchesDoc(patterns, doc))
    throw new AppError('FORBIDDEN', `token does not grant document "${doc}"`)
  const access = claims.access ?? 'write'
  if (access !== 'read' && access !== 'write') {
    throw new AppError('FORBIDDEN', `token claim "access" must be "read" or "write"`)
  }
  return {
    access,
    mayDelete: claims.delete === true && access === 'write',
    subject: claims.sub,
    ...(typeof claims.exp === 'number' ? { expiresAtMs: claims.exp * 1000 } : {}),
    ...(typeof claims.iat === 'number' ? { issuedAtMs: claims.iat * 1000 } : {}),
    ...(typeof claims.jti === 'string' ? { tokenId: claims.jti } : {}),
  }
}

/** A verifier for the configured key: a key, or a key resolver (JWKS), each its own overload. */
const createVerifier = async (
  opts: Extract<AuthOptions, { mode: 'jwt' }>,
): Promise<(token: string) => Promise<JWTPayload>> => {
  const verifyOptions = {
    ...(opts.issuer ? { issuer: opts.issuer } : {}),
    ...(opts.audience ? { audience: opts.audience } : {}),
  }
  if (opts.secret) {
    const key = new TextEncoder().encode(opts.secret)
    return async (token) => (await jwtVerify(token, key, verifyOptions)).payload
  }
  if (opts.publicKey) {
    const alg = opts.publicKeyAlg ?? 'RS256'
    let key: Awaited<ReturnType<typeof importSPKI>>
    try {
      key = await importSPKI(opts.publicKey, alg)
    } catch (err) {
      throw new AppError('CONFIG', `AUTH_JWT_PUBLIC_KEY: not an SPKI PEM key for ${alg}`, {
        cause: err,
      })
    }
    return async (token) => (await jwtVerify(token, key, verifyOptions)).payload
  }
  if (opts.jwksUrl) {
    const getKey = createRemoteJWKSet(new URL(opts.jwksUrl))
    return async (token) => (await jwtVerify(token, getKey, verifyOptions)).payload
  }
  throw new AppError(
    'CONFIG',
    'AUTH_MODE=jwt needs AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or AUTH_JWKS_URL',
  )
}

export const createAuthenticator = async (opts: AuthOptions): Promise<Authenticator> => {
  if (opts.mode === 'none') {
    return {
      authorize: () => Promise.resolve({ access: 'write', mayDelete: true, subject: undefined }),
    }
  }
  const verify = await createVerifier(opts)
  return {
    authorize: async (token, doc) => {
      if (!token)
        throw new AppError(
          'UNAUTHORIZED',
          'missing token (pass ?token=<jwt> or Authorization: Bearer <jwt>)',
        )
      let claims: JWTPayload
      try {
        claims = await verify(token)
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err)
        throw new AppError('UNAUTHORIZED', `invalid token: ${reason}`, { cause: err })
      }
      return grantFromClaims(claims, doc)
    },
  }
}
