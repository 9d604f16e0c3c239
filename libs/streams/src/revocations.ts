import type { Redis } from './redis.js'
import { guarded } from '@streambed/common'
import type { Keys } from './keys.js'

/** What a revocation names: every token of a subject, one token (its `jti`), or a document. */
export type RevocationKind = 'sub' | 'jti' | 'doc'

export interface Revocation {
  readonly kind: RevocationKind
  readonly value: string
  /** Redis time of the revocation, ms: tokens issued at or before it are refused. */
  readonly atMs: number
}

/** What a token carries that a revocation may name. */
export interface TokenFacts {
  readonly subject?: string | undefined
  readonly tokenId?: string | undefined
  readonly doc: string
}

export interface Revocations {
  /**
   * Records a revocation for `ttlMs` (set it to the longest lifetime of a token you issue) and
   * announces it to every node. Returns it with its Redis time.
   */
  revoke(kind: RevocationKind, value: string, ttlMs: number): Promise<Revocation>
  /** The latest revocation time naming any of `facts`, or null. */
  revokedAt(facts: TokenFacts): Promise<number | null>
  /** Parses a message of the `keys.revocations` channel; null if it is not one. */
  decode(message: string): Revocation | null
}

const kinds: readonly RevocationKind[] = ['sub', 'jti', 'doc']

export const createRevocations = (opts: { redis: Redis; keys: Keys }): Revocations => {
  const { redis, keys } = opts
  return {
    revoke: (kind, value, ttlMs) =>
      guarded('REDIS_UNAVAILABLE', `revoke ${kind} ${value}`, async () => {
        const [s, us] = await redis.time()
        const atMs = Number(s) * 1000 + Math.floor(Number(us) / 1000)
        await redis.set(keys.revoked(kind, value), String(atMs), 'PX', Math.max(1, ttlMs))
        const revocation: Revocation = { kind, value, atMs }
        await redis.spublish(keys.revocations, JSON.stringify(revocation))
        return revocation
      }),
    revokedAt: (facts) =>
      guarded('REDIS_UNAVAILABLE', 'read revocations', async () => {
        const names: string[] = [keys.revoked('doc', facts.doc)]
        if (facts.subject) names.push(keys.revoked('sub', facts.subject))
        if (facts.tokenId) names.push(keys.revoked('jti', facts.tokenId))
        // One GET each: on a Redis Cluster the keys live in different slots.
        const values = await Promise.all(names.map((k) => redis.get(k)))
        const times = values.filter((v): v is string => v !== null).map(Number)
        return times.length === 0 ? null : Math.max(...times)
      }),
    decode: (message) => {
      try {
        const r = JSON.parse(message) as Partial<Revocation>
        return kinds.includes(r.kind as RevocationKind) &&
          typeof r.value === 'string' &&
          typeof r.atMs === 'number'
          ? { kind: r.kind as RevocationKind, value: r.value, atMs: r.atMs }
          : null
      } catch {
        // not ours: ignored
        return null
      }
    },
  }
}

/** Whether `revocation` names a token with `facts` issued at `issuedAtMs` (unknown: revoked). */
export const revokes = (
  revocation: Revocation,
  facts: TokenFacts,
  issuedAtMs: number | undefined,
): boolean => {
  const named =
    (revocation.kind === 'sub' && facts.subject === revocation.value) ||
    (revocation.kind === 'jti' && facts.tokenId === revocation.value) ||
    (revocation.kind === 'doc' && facts.doc === revocation.value)
  return named && (issuedAtMs === undefined || issuedAtMs <= revocation.atMs)
}
