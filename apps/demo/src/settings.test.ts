import { describe, expect, it } from 'vitest'
import {
  hrefFor,
  loadUser,
  randomDocName,
  sameOriginServer,
  saveUser,
  targetOf,
  validUser,
} from './settings.js'

const memoryStorage = () => {
  const items = new Map<string, string>()
  return {
    items,
    getItem: (k: string) => items.get(k) ?? null,
    setItem: (k: string, v: string) => void items.set(k, v),
  }
}

describe('page address', () => {
  it('reads the document from the hash and the token and server from the query', () => {
    expect(targetOf('http://localhost:8080/#team/notes')).toEqual({
      doc: 'team/notes',
      token: null,
      serverUrl: 'ws://localhost:8080',
    })
    expect(targetOf('https://demo.example/?token=abc&server=wss://n2.example/#a%20b')).toEqual({
      doc: 'a b',
      token: 'abc',
      serverUrl: 'wss://n2.example',
    })
    expect(targetOf('http://x/#%E0%A4%A', 'ws://node:1/').doc).toBe('%E0%A4%A')
    expect(targetOf('http://x/?token=', 'ws://node:1/')).toEqual({
      doc: '',
      token: null,
      serverUrl: 'ws://node:1',
    })
  })

  it('derives the WebSocket origin from the page', () => {
    expect(sameOriginServer('http://127.0.0.1:9/x')).toBe('ws://127.0.0.1:9')
    expect(sameOriginServer('https://demo.example/')).toBe('wss://demo.example')
  })

  it('writes document and token back, keeping slashes readable and other parameters', () => {
    const href = hrefFor('http://h/?server=ws://n&token=old#x', 'team/q&a', 'new')
    expect(href).toBe('http://h/?server=ws%3A%2F%2Fn&token=new#team/q%26a')
    expect(targetOf(href)).toMatchObject({ doc: 'team/q&a', token: 'new', serverUrl: 'ws://n' })
    expect(hrefFor(href, 'd', null)).toBe('http://h/?server=ws%3A%2F%2Fn#d')
  })

  it('makes short random document names', () => {
    expect(randomDocName(() => 0)).toBe('note-00000')
    expect(randomDocName(() => 0.999999999)).toMatch(/^note-[0-9a-z]{5}$/)
  })
})

describe('user', () => {
  it('round-trips through storage', () => {
    const storage = memoryStorage()
    const first = loadUser(storage, () => 0)
    expect(first).toEqual({ name: 'Ada', color: '#e4572e' })
    saveUser(storage, { name: 'Grace', color: '#123abc' })
    expect(loadUser(storage, () => 0)).toEqual({ name: 'Grace', color: '#123abc' })
  })

  it('falls back field by field on anything malformed', () => {
    const fallback = { name: 'Ada', color: '#000000' }
    expect(validUser({ name: '  ', color: 'red' }, fallback)).toEqual(fallback)
    expect(validUser({ name: ` ${'x'.repeat(50)} `, color: '#ABCDEF' }, fallback)).toEqual({
      name: 'x'.repeat(40),
      color: '#ABCDEF',
    })
    const storage = memoryStorage()
    for (const raw of ['{', 'null', '42', '{"name": 7}']) {
      storage.items.set('streambed-demo-user', raw)
      expect(loadUser(storage, () => 0)).toEqual({ name: 'Ada', color: '#e4572e' })
    }
  })
})
