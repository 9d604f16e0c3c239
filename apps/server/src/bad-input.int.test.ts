import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import { SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { CloseCode } from '@streambed/common'
import {
  decodeMessage,
  encodeAwarenessMessage,
  encodeSyncStep1,
  encodeSyncUpdate,
} from '@streambed/protocol'
import {
  connectClient,
  connectRaw,
  uniquePrefix,
  type TestClient,
  useRedisServer,
  captureUpdate,
} from '@streambed/testing'
import { startTestNode, type TestNode } from './testing/test-node.js'

const redis = useRedisServer()

const updateOf = captureUpdate

describe('bad input from a client', () => {
  let node: TestNode
  let prefix: string
  let good: [TestClient, TestClient]

  beforeAll(async () => {
    prefix = uniquePrefix('bad')
    node = await startTestNode({
      REDIS_URL: redis.url,
      REDIS_PREFIX: prefix,
      WS_MAX_MESSAGE_BYTES: '64KiB',
    })
    good = [connectClient(node.url, 'shared'), connectClient(node.url, 'shared')]
    await Promise.all(good.map((c) => c.synced()))
  })
  afterAll(async () => {
    for (const c of good) c.destroy()
    await node.close()
  })

  const streamLength = () => redis.admin.xlen(`${prefix}:v1:{shared}:s`)

  /** Sends `frame` on a fresh raw connection to `shared`; returns the close event. */
  const sendBad = async (frame: Uint8Array | Buffer) => {
    const raw = connectRaw(`${node.url}/shared`)
    await raw.opened
    raw.send(frame)
    return raw.closed
  }

  /** The good clients still exchange updates after the bad one was thrown out. */
  const goodClientsStillWork = async (marker: string) => {
    good[0].doc.getMap('m').set(marker, true)
    await vi.waitFor(() => expect(good[1].doc.getMap('m').get(marker)).toBe(true))
  }

  const frames: [string, () => Uint8Array][] = [
    ['random garbage', () => new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f])],
    ['an empty frame', () => new Uint8Array(0)],
    ['an unknown message type', () => new Uint8Array([7, 1, 2, 3])],
    ['an unknown sync step', () => new Uint8Array([0, 9, 1, 0])],
    [
      'a truncated sync update',
      () => encodeSyncUpdate(updateOf((d) => d.getText('t').insert(0, 'x'))).subarray(0, 5),
    ],
    [
      'trailing bytes after a message',
      () =>
        Buffer.concat([
          encodeSyncUpdate(updateOf((d) => d.getText('t').insert(0, 'x'))),
          Buffer.from([1, 2]),
        ]),
    ],
    [
      'a sync update that is not a Yjs update',
      () => encodeSyncUpdate(new Uint8Array([5, 200, 1, 7, 7, 7, 7])),
    ],
    [
      'an awareness update with a non-JSON state',
      () => {
        const e = encoding.createEncoder()
        encoding.writeVarUint(e, 1)
        encoding.writeVarUint(e, 42)
        encoding.writeVarUint(e, 1)
        encoding.writeVarString(e, '{not json')
        return encodeAwarenessMessage(encoding.toUint8Array(e))
      },
    ],
    ['a sync step 1 with a broken state vector', () => encodeSyncStep1(new Uint8Array([3, 1]))],
  ]

  for (const [name, frame] of frames) {
    it(`closes with 4400 on ${name}, appends nothing, and other clients keep working`, async () => {
      const before = await streamLength()
      const closed = await sendBad(frame())
      expect(closed.code).toBe(CloseCode.badMessage)
      expect(closed.reason.length).toBeGreaterThan(5)
      expect(await streamLength()).toBe(before)
      await goodClientsStillWork(name)
      expect(await streamLength()).toBe(before + 1)
    })
  }

  it('names the problem in the close reason', async () => {
    const closed = await sendBad(new Uint8Array([7]))
    expect(closed.reason).toBe('unknown message type 7')
  })

  it('closes with 4413 on a frame above WS_MAX_MESSAGE_BYTES and appends nothing', async () => {
    const before = await streamLength()
    const big = updateOf((d) => d.getText('t').insert(0, 'x'.repeat(100_000)))
    const closed = await sendBad(encodeSyncUpdate(big))
    expect(closed.code).toBe(CloseCode.messageTooBig)
    expect(closed.reason).toMatch(
      /^message of 100\d{3} bytes exceeds WS_MAX_MESSAGE_BYTES \(65536\)$/,
    )
    expect(await streamLength()).toBe(before)
    await goodClientsStillWork('after-oversized')
  })

  it('drops the connection on a frame above twice the limit (uWebSockets.js hard cap)', async () => {
    const before = await streamLength()
    const huge = updateOf((d) => d.getText('t').insert(0, 'x'.repeat(200_000)))
    const closed = await sendBad(encodeSyncUpdate(huge))
    expect(closed.code).toBe(1006)
    expect(await streamLength()).toBe(before)
    await goodClientsStillWork('after-huge')
  })

  it('rejects bad document names with 4404 and a reason naming the rule', async () => {
    for (const [path, why] of [
      ['a%7Bb%7D', 'character "{" not allowed'],
      ['a//b', 'empty path segment'],
      // Encoded slashes: a literal x/../y would be normalised away by the client's URL parser.
      ['x%2F..%2Fy', '".." segment'],
      ['%E0%A4%A', 'malformed percent-encoding'],
      [encodeURIComponent('é'), 'character "é" not allowed'],
      ['a'.repeat(201), '201 characters'],
    ] as const) {
      const raw = connectRaw(`${node.url}/${path}`)
      const closed = await raw.closed
      expect(closed.code, path).toBe(CloseCode.badDocName)
      expect(closed.reason, path).toContain(why)
    }
    await goodClientsStillWork('after-bad-names')
  })

  it('answers bad HTTP input with a JSON error and the right status', async () => {
    const bad = await fetch(`${node.httpUrl}/docs/shared`, {
      method: 'POST',
      body: new Uint8Array([5, 200, 1]),
    })
    expect(bad.status).toBe(400)
    expect(await bad.json()).toEqual({
      error: { code: 'BAD_MESSAGE', message: 'payload is not a valid Yjs update' },
    })
    const name = await fetch(`${node.httpUrl}/docs/a%7Bb`)
    expect(name.status).toBe(400)
    expect(((await name.json()) as { error: { code: string } }).error.code).toBe('BAD_DOC_NAME')
    const big = await fetch(`${node.httpUrl}/docs/shared`, {
      method: 'POST',
      body: new Uint8Array(70_000),
    })
    expect(big.status).toBe(413)
    const missing = await fetch(`${node.httpUrl}/nothing-here`)
    expect(missing.status).toBe(404)
  })

  it('appends and reads documents over HTTP', async () => {
    const update = updateOf((d) => d.getText('http').insert(0, 'via http'))
    const res = await fetch(`${node.httpUrl}/docs/shared`, { method: 'POST', body: update })
    expect(res.status).toBe(200)
    expect(((await res.json()) as { appended: boolean }).appended).toBe(true)
    await vi.waitFor(() => expect(good[0].doc.getText('http').toString()).toBe('via http'))
    const state = await fetch(`${node.httpUrl}/docs/shared`)
    const doc = new Y.Doc()
    Y.applyUpdate(doc, new Uint8Array(await state.arrayBuffer()))
    expect(doc.getText('http').toString()).toBe('via http')
    expect(state.headers.get('x-streambed-up-to')).toMatch(/^\d+-\d+$/)
  })
})

describe('tokens', () => {
  const secret = 'a-test-secret-that-is-long-enough-0123456789'
  const sign = (claims: Record<string, unknown>, key = secret, expiresIn = '1h') =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('user-1')
      .setIssuedAt()
      .setExpirationTime(expiresIn)
      .sign(new TextEncoder().encode(key))

  let node: TestNode
  let prefix: string
  beforeAll(async () => {
    prefix = uniquePrefix('auth')
    node = await startTestNode({
      REDIS_URL: redis.url,
      REDIS_PREFIX: prefix,
      AUTH_MODE: 'jwt',
      AUTH_JWT_SECRET: secret,
    })
  })
  afterAll(async () => {
    await node.close()
  })

  const connectWith = async (token: string | null, doc = 'secret-doc') => {
    const raw = connectRaw(`${node.url}/${doc}${token === null ? '' : `?token=${token}`}`)
    return { raw, closed: await raw.closed }
  }

  it('closes with 4401 and an auth message on a missing, malformed, expired or wrongly signed token', async () => {
    const cases = [
      [null, 'missing token'],
      ['not-a-jwt', 'invalid token'],
      [await sign({ docs: ['*'] }, secret, '-1m'), 'invalid token'],
      [await sign({ docs: ['*'] }, 'another-secret-that-is-long-enough-01234567'), 'invalid token'],
    ] as const
    for (const [token, reason] of cases) {
      const { raw, closed } = await connectWith(token)
      expect(closed.code).toBe(CloseCode.unauthorized)
      expect(closed.reason).toContain(reason)
      const auth = raw.messages.map((m) => decodeMessage(m)).find((m) => m.kind === 'auth')
      expect(auth).toBeDefined()
    }
  })

  it('closes with 4403 when the token does not grant the document', async () => {
    const { closed } = await connectWith(await sign({ docs: ['team-a/*'] }), 'team-b/doc')
    expect(closed.code).toBe(CloseCode.forbidden)
    expect(closed.reason).toContain('does not grant document "team-b/doc"')
  })

  it('lets a read-only token read but not write, and says so', async () => {
    const writer = connectClient(node.url, 'team-a/doc', {
      params: { token: await sign({ docs: ['team-a/*'] }) },
    })
    await writer.synced()
    writer.doc.getText('t').insert(0, 'written')
    await vi.waitFor(async () =>
      expect(await redis.admin.xlen(`${prefix}:v1:{team-a/doc}:s`)).toBe(1),
    )
    const reader = connectRaw(
      `${node.url}/team-a/doc?token=${await sign({ docs: ['team-a/doc'], access: 'read' })}`,
    )
    await reader.opened
    reader.send(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
    await vi.waitFor(() =>
      expect(reader.messages.some((m) => decodeMessage(m).kind === 'sync-step2')).toBe(true),
    )
    reader.send(encodeSyncUpdate(updateOf((d) => d.getText('t').insert(0, 'not allowed'))))
    await vi.waitFor(() =>
      expect(reader.messages.some((m) => decodeMessage(m).kind === 'auth')).toBe(true),
    )
    expect(await redis.admin.xlen(`${prefix}:v1:{team-a/doc}:s`)).toBe(1)
    // The reader is still connected and still receives live updates.
    writer.doc.getText('t').insert(0, 'more ')
    await vi.waitFor(() =>
      expect(reader.messages.some((m) => decodeMessage(m).kind === 'sync-update')).toBe(true),
    )
    expect(reader.ws.readyState).toBe(reader.ws.OPEN)
    reader.close()
    writer.destroy()
  })

  it('checks tokens on the HTTP API too', async () => {
    expect((await fetch(`${node.httpUrl}/docs/x`)).status).toBe(401)
    const readOnly = await sign({ docs: ['x'], access: 'read' })
    expect(
      (await fetch(`${node.httpUrl}/docs/x`, { headers: { authorization: `Bearer ${readOnly}` } }))
        .status,
    ).toBe(200)
    const post = await fetch(`${node.httpUrl}/docs/x`, {
      method: 'POST',
      headers: { authorization: `Bearer ${readOnly}` },
      body: updateOf((d) => d.getText('t').insert(0, 'x')),
    })
    expect(post.status).toBe(403)
  })
})
