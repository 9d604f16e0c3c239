/**
 * WS_COMPRESSION (issue 12, item 2): with `shared` or `dedicated`, messages from
 * WS_COMPRESS_MIN_BYTES up reach a client that negotiated permessage-deflate compressed, and
 * clients converge as without; `off` sends every byte as it is. Wire bytes are counted on the
 * client's TCP socket.
 */
import * as Y from 'yjs'
import { describe, expect, it, vi } from 'vitest'
import { encodeSyncStep1 } from '@streambed/protocol'
import { connectClient, connectRaw, uniquePrefix, useRedisServer } from '@streambed/testing'
import { startTestNode } from './testing/test-node.js'

const redis = useRedisServer()

/** About `bytes` of text, words drawn from a small vocabulary (as prose is). */
const prose = (bytes: number): string => {
  const words = ['document', 'node', 'stream', 'the', 'of', 'editor', 'a', 'compaction', 'and']
  let seed = 7
  const out: string[] = []
  for (let n = 0; n < bytes;) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    const word = words[seed % words.length] as string
    out.push(word)
    n += word.length + 1
  }
  return out.join(' ')
}

/** Joins `doc` with an empty state vector; the answer's bytes and the bytes read off the wire. */
const join = async (url: string, doc: string) => {
  const raw = connectRaw(`${url}/${doc}`)
  await raw.opened
  raw.send(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
  await vi.waitFor(() => expect(raw.messages.some((m) => m[0] === 0 && m[1] === 1)).toBe(true))
  const message = raw.messages.reduce((n, m) => n + m.length, 0)
  const wire = (raw.ws as unknown as { _socket: { bytesRead: number } })._socket.bytesRead
  raw.close()
  return { message, wire }
}

describe('WS_COMPRESSION', () => {
  it.each(['shared', 'dedicated'] as const)(
    '%s: a join answer goes compressed, live updates converge',
    async (mode) => {
      const prefix = uniquePrefix(`compress-${mode}`)
      await using plain = await startTestNode({
        REDIS_URL: redis.url,
        REDIS_PREFIX: prefix,
        WS_COMPRESSION: 'off',
      })
      await using node = await startTestNode({
        REDIS_URL: redis.url,
        REDIS_PREFIX: prefix,
        WS_COMPRESSION: mode,
      })
      // A 40 KB document: one message, below the 64 KiB fragment size.
      const writer = connectClient(plain.url, 'notes')
      await writer.synced()
      writer.doc.getText('t').insert(0, prose(40_000))

      await vi.waitFor(async () =>
        expect((await join(plain.url, 'notes')).message).toBeGreaterThan(40_000),
      )
      const uncompressed = await join(plain.url, 'notes')
      const compressed = await join(node.url, 'notes')
      expect(compressed.message).toBe(uncompressed.message)
      expect(uncompressed.wire).toBeGreaterThan(uncompressed.message)
      expect(compressed.wire).toBeLessThan(uncompressed.message / 2)

      // Clients on the compressing node and the plain one edit together.
      const reader = connectClient(node.url, 'notes')
      await reader.synced()
      reader.doc.getText('t').insert(0, 'from the compressing node: ')
      writer.doc.getText('t').insert(0, prose(2000))
      await vi.waitFor(() =>
        expect(reader.doc.getText('t').toString()).toBe(writer.doc.getText('t').toString()),
      )
      expect(reader.doc.getText('t').toString()).toContain('from the compressing node: ')
      writer.destroy()
      reader.destroy()
    },
  )
})
