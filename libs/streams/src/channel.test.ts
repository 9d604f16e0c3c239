import { describe, it, expect } from 'vitest'
import { decodeChannelMessage, encodeStatelessMessage } from './channel.js'

// Payloads are compared as Buffers: the decoder returns subarrays of the received Buffer.
const message = (header: string, body: Uint8Array | string = '') =>
  Buffer.concat([Buffer.from(`${header}\n`, 'latin1'), Buffer.from(body)])

describe('decodeChannelMessage', () => {
  it('decodes an update doorbell with an inline payload', () => {
    const update = Buffer.from([1, 2, 0, 255])
    expect(
      decodeChannelMessage(message('u 1718000000123-1 1718000000100-0 node-a/17 i', update)),
    ).toEqual({
      kind: 'update',
      id: '1718000000123-1',
      prev: '1718000000100-0',
      origin: 'node-a/17',
      update,
    })
  })

  it('keeps newlines and spaces inside the inline payload', () => {
    const update = Buffer.from('\n a b \n\n u 1-0 2-0 x i\n', 'latin1')
    const decoded = decodeChannelMessage(message('u 2-0 1-0 n/1 i', update))
    expect(decoded).toMatchObject({ kind: 'update', id: '2-0', prev: '1-0', origin: 'n/1' })
    expect(decoded?.kind === 'update' && Buffer.from(decoded.update!).equals(update)).toBe(true)
  })

  it('decodes an empty inline payload as an empty update', () => {
    expect(decodeChannelMessage(message('u 2-0 1-0 n/1 i'))).toMatchObject({
      kind: 'update',
      update: Buffer.alloc(0),
    })
  })

  it('decodes an update doorbell in read mode (no payload) with update null', () => {
    expect(decodeChannelMessage(message('u 5-3 5-2 node-b/4 r'))).toEqual({
      kind: 'update',
      id: '5-3',
      prev: '5-2',
      origin: 'node-b/4',
      update: null,
    })
  })

  it('decodes an awareness message', () => {
    const update = Buffer.from([1, 10, 3, 2, 0x7b, 0x7d])
    expect(decodeChannelMessage(message('a node-a/3', update))).toEqual({
      kind: 'awareness',
      origin: 'node-a/3',
      update,
    })
  })

  it('keeps newlines inside an awareness payload', () => {
    const update = Buffer.from('x\ny\n', 'latin1')
    const decoded = decodeChannelMessage(message('a n/1', update))
    expect(decoded?.kind === 'awareness' && Buffer.from(decoded.update).equals(update)).toBe(true)
  })

  it('round-trips a stateless message, newlines and multi-byte characters included', () => {
    const payload = Buffer.from('{"a":"x\ny","b":"ü ✓"}\n', 'utf8')
    const decoded = decodeChannelMessage(encodeStatelessMessage('node-a~x1/7', payload))
    expect(decoded).toEqual({ kind: 'stateless', origin: 'node-a~x1/7', payload })
  })

  it('decodes an empty stateless payload', () => {
    expect(decodeChannelMessage(message('s n/1'))).toEqual({
      kind: 'stateless',
      origin: 'n/1',
      payload: Buffer.alloc(0),
    })
  })

  it.each([
    ['an empty message', Buffer.alloc(0)],
    ['no newline', Buffer.from('u 1-0 0-0 n/1 i')],
    ['an unknown kind', message('x 1-0 0-0 n/1 i')],
    ['an update header with too few fields', message('u 1-0 0-0 i')],
    ['an update header with too many fields', message('u 1-0 0-0 n/1 i extra')],
    ['an awareness header without origin', message('a')],
    ['an awareness header with extra fields', message('a n/1 extra')],
    ['a stateless header without origin', message('s')],
    ['a stateless header with extra fields', message('s n/1 extra')],
    ['a blank header', message('')],
    ['binary junk', Buffer.from([0xff, 0x00, 0x0a, 0x01])],
  ])('returns null for %s', (_name, junk) => {
    expect(decodeChannelMessage(junk)).toBeNull()
  })
})
