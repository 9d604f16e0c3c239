/**
 * `streambed revoke` as a child process against two in-process nodes on one Redis (issue 8, item
 * 4): matching sockets on every node close with 4411 within a second of the command's exit, their
 * tokens are refused on reconnect, tokens issued afterwards work.
 */
import { SignJWT } from 'jose'
import { describe, expect, it, vi } from 'vitest'
import { CloseCode } from '@streambed/common'
import { startTestNode } from '@streambed/server/testing'
import { createKeys } from '@streambed/streams'
import {
  connectClient,
  connectRaw,
  type RawClient,
  uniquePrefix,
  useRedisServer,
} from '@streambed/testing'
import { startCliProcess } from './testing/nodes.js'

const redis = useRedisServer()

const SECRET = 'revoke-test-secret-of-32-or-more-characters'
const key = new TextEncoder().encode(SECRET)
const nodeEnv = (prefix: string) => ({
  REDIS_URL: redis.url,
  REDIS_PREFIX: prefix,
  AUTH_MODE: 'jwt',
  AUTH_JWT_SECRET: SECRET,
})

const nowS = () => Math.floor(Date.now() / 1000)

/** An HS256 token granting every document, issued now unless `iat` says otherwise. */
const token = (claims: { sub: string; jti?: string; iat?: number }) => {
  const jwt = new SignJWT({ docs: ['*'] })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(claims.sub)
    .setIssuedAt(claims.iat ?? nowS())
  if (claims.jti !== undefined) jwt.setJti(claims.jti)
  return jwt.sign(key)
}

/** A token issued in the second after `atMs` (iat has whole seconds): newer than a revocation. */
const issuedAfter = (atMs: number, claims: { sub: string; jti?: string }) =>
  token({ ...claims, iat: Math.floor(atMs / 1000) + 1 })

/** `streambed revoke <args>` with the nodes' Redis settings; resolves once it exited. */
const revoke = async (prefix: string, args: string[]) => {
  const proc = startCliProcess(['revoke', ...args], { REDIS_URL: redis.url, REDIS_PREFIX: prefix })
  const code = await proc.exited
  return { code, output: proc.output.join('\n') }
}

interface Revocation {
  kind: string
  value: string
  atMs: number
  ttlMs: number
}

const parseJson = (output: string): Revocation =>
  JSON.parse(output.split('\n').find((l) => l.startsWith('{')) ?? 'null') as Revocation

/** A raw socket whose close, once it comes, is readable synchronously (for vi.waitFor). */
interface Watched {
  readonly raw: RawClient
  close: { code: number; reason: string } | null
}
const watch = (url: string): Watched => {
  const w: Watched = { raw: connectRaw(url), close: null }
  void w.raw.closed.then((c) => (w.close = c))
  return w
}
const isOpen = (w: Watched) => w.close === null && w.raw.ws.readyState === w.raw.ws.OPEN

/** Opens a socket with `token` and expects it refused as revoked. */
const expectRefused = async (url: string) => {
  const closed = await connectRaw(url).closed
  expect(closed).toEqual({ code: CloseCode.unauthorized, reason: 'token revoked; get a new one' })
}

/** A y-websocket client with `token` syncs (the node admits the token). */
const expectServed = async (url: string, doc: string, token: string) => {
  const client = connectClient(url, doc, { params: { token } })
  try {
    await client.synced()
  } finally {
    client.destroy()
  }
}

const revokedClose = { code: CloseCode.tokenRevoked, reason: 'token revoked' }

describe('streambed revoke', () => {
  it('--subject closes that subject’s sockets on every node within a second; old tokens are refused, newer ones work', async () => {
    const prefix = uniquePrefix('rv-sub')
    await using a = await startTestNode(nodeEnv(prefix))
    await using b = await startTestNode(nodeEnv(prefix))
    const alice = await token({ sub: 'alice' })
    const bob = await token({ sub: 'bob' })
    const aliceA = watch(`${a.url}/notes?token=${alice}`)
    const aliceB = watch(`${b.url}/plans?token=${alice}`)
    // Bob's clients on both nodes keep working through it.
    const bobA = connectClient(a.url, 'notes', { params: { token: bob } })
    const bobB = connectClient(b.url, 'notes', { params: { token: bob } })
    await Promise.all([aliceA.raw.opened, aliceB.raw.opened, bobA.synced(), bobB.synced()])

    const result = await revoke(prefix, ['--subject', 'alice', '--json'])
    expect(result.code).toBe(0)
    await vi.waitFor(
      () => {
        expect(aliceA.close).toEqual(revokedClose)
        expect(aliceB.close).toEqual(revokedClose)
      },
      { timeout: 1000, interval: 10 },
    )
    const revocation = parseJson(result.output)
    expect(revocation).toEqual({
      kind: 'sub',
      value: 'alice',
      atMs: expect.any(Number) as number,
      ttlMs: 24 * 3600 * 1000,
    })
    expect(bobA.provider.wsconnected && bobB.provider.wsconnected).toBe(true)
    bobA.doc.getText('t').insert(0, 'still here')
    await vi.waitFor(() => expect(bobB.doc.getText('t').toString()).toBe('still here'))

    await expectRefused(`${a.url}/notes?token=${alice}`)
    await expectRefused(`${b.url}/plans?token=${alice}`)
    await expectServed(b.url, 'plans', await issuedAfter(revocation.atMs, { sub: 'alice' }))
    bobA.destroy()
    bobB.destroy()
  })

  it('--doc closes every socket of the document on every node; the same tokens still open other documents', async () => {
    const prefix = uniquePrefix('rv-doc')
    await using a = await startTestNode(nodeEnv(prefix))
    await using b = await startTestNode(nodeEnv(prefix))
    const alice = await token({ sub: 'alice' })
    const bob = await token({ sub: 'bob' })
    const revoked = [watch(`${a.url}/notes?token=${alice}`), watch(`${b.url}/notes?token=${bob}`)]
    const others = [watch(`${a.url}/other?token=${bob}`), watch(`${b.url}/other?token=${alice}`)]
    await Promise.all([...revoked, ...others].map((w) => w.raw.opened))

    const result = await revoke(prefix, ['--doc', 'notes'])
    expect(result.code).toBe(0)
    await vi.waitFor(
      () => {
        for (const w of revoked) expect(w.close).toEqual(revokedClose)
      },
      { timeout: 1000, interval: 10 },
    )
    for (const w of others) expect(isOpen(w)).toBe(true)
    const line = /^revoked doc "notes" at (\S+) for 24h$/m.exec(result.output)
    expect(line).not.toBeNull()
    const atMs = Date.parse(line![1]!)

    await expectRefused(`${b.url}/notes?token=${alice}`)
    await expectRefused(`${a.url}/notes?token=${bob}`)
    await expectServed(a.url, 'other', alice)
    await expectServed(b.url, 'notes', await issuedAfter(atMs, { sub: 'bob' }))
    for (const w of others) w.raw.close()
  })

  it('--token-id closes that token’s sockets only; --ttl sets how long the revocation holds', async () => {
    const prefix = uniquePrefix('rv-jti')
    await using a = await startTestNode(nodeEnv(prefix))
    await using b = await startTestNode(nodeEnv(prefix))
    const lost = await token({ sub: 'alice', jti: 'lost-laptop' })
    const kept = await token({ sub: 'alice', jti: 'phone' })
    const revoked = [watch(`${a.url}/notes?token=${lost}`), watch(`${b.url}/notes?token=${lost}`)]
    const others = [watch(`${a.url}/notes?token=${kept}`), watch(`${b.url}/notes?token=${kept}`)]
    await Promise.all([...revoked, ...others].map((w) => w.raw.opened))

    const result = await revoke(prefix, ['--token-id', 'lost-laptop', '--ttl', '90s', '--json'])
    expect(result.code).toBe(0)
    await vi.waitFor(
      () => {
        for (const w of revoked) expect(w.close).toEqual(revokedClose)
      },
      { timeout: 1000, interval: 10 },
    )
    for (const w of others) expect(isOpen(w)).toBe(true)
    const revocation = parseJson(result.output)
    expect(revocation).toMatchObject({ kind: 'jti', value: 'lost-laptop', ttlMs: 90_000 })
    const ttl = await redis.admin.pttl(`${prefix}:v1:revoked:jti:lost-laptop`)
    expect(ttl).toBeGreaterThan(0)
    expect(ttl).toBeLessThanOrEqual(90_000)

    await expectRefused(`${a.url}/notes?token=${lost}`)
    await expectServed(b.url, 'notes', kept)
    const reissued = await issuedAfter(revocation.atMs, { sub: 'alice', jti: 'lost-laptop' })
    await expectServed(a.url, 'notes', reissued)
    for (const w of others) w.raw.close()
  })

  it('exits 78 with the reason and the usage on bad usage, and revokes nothing', async () => {
    const prefix = uniquePrefix('rv-usage')
    const runs = await Promise.all([
      revoke(prefix, []),
      revoke(prefix, ['--subject', 'alice', '--doc', 'notes']),
      revoke(prefix, ['--subject', 'alice', '--ttl', 'soon']),
      revoke(prefix, ['--doc', 'notes', '--ttl', '0s']),
      revoke(prefix, ['--help']),
    ])
    const [none, two, badTtl, zeroTtl, help] = runs
    for (const run of [none, two]) {
      expect(run.code).toBe(78)
      expect(run.output).toContain('streambed: name exactly one of --subject, --doc, --token-id')
      expect(run.output).toContain('Usage: streambed revoke')
    }
    expect(badTtl.code).toBe(78)
    expect(badTtl.output).toContain('--ttl: expected a duration like 24h, got "soon"')
    expect(zeroTtl.code).toBe(78)
    expect(zeroTtl.output).toContain('--ttl: expected a duration like 24h, got "0s"')
    expect(help.code).toBe(0)
    expect(help.output).toContain('Usage: streambed revoke')
    expect(await redis.admin.keys(`${prefix}:*`)).toEqual([])
  })

  it('still reaches a node whose last document went and whose Redis restarted meanwhile', async () => {
    // ioredis keeps one subscription set per connection; the SUNSUBSCRIBE of a node's last
    // document used to empty it, so after a reconnect the node no longer heard revocations.
    const prefix = uniquePrefix('rv-restart')
    await using a = await startTestNode(nodeEnv(prefix))
    const alice = await token({ sub: 'alice' })
    const first = connectClient(a.url, 'first', { params: { token: alice } })
    await first.synced()
    first.destroy()
    const channel = createKeys(prefix).channel('first')
    await vi.waitFor(
      async () => {
        const [, subscribers] = (await redis.admin.call('PUBSUB', 'SHARDNUMSUB', channel)) as [
          string,
          number,
        ]
        expect(subscribers).toBe(0)
      },
      { timeout: 10_000, interval: 50 },
    )
    await redis.server.restart()
    await vi.waitFor(async () => expect((await fetch(`${a.httpUrl}/readyz`)).status).toBe(200), {
      timeout: 20_000,
      interval: 100,
    })
    const second = watch(`${a.url}/second?token=${await token({ sub: 'alice' })}`)
    await second.raw.opened
    expect((await revoke(prefix, ['--subject', 'alice'])).code).toBe(0)
    await vi.waitFor(() => expect(second.close).toEqual(revokedClose), {
      timeout: 5000,
      interval: 10,
    })
  })
})
