import { describe, it, expect } from 'vitest'
import { createKeys, type DocKeyKind, KEY_VERSION, shardOf } from './keys.js'

const keys = createKeys('sb')

/** The Redis Cluster hash tag of a key: the text between the first `{` and the next `}`. */
const hashTag = (key: string): string | null => {
  const open = key.indexOf('{')
  const close = key.indexOf('}', open + 1)
  return open >= 0 && close > open + 1 ? key.slice(open + 1, close) : null
}

const docBuilders: [DocKeyKind, (doc: string) => string][] = [
  ['s', (doc) => keys.stream(doc)],
  ['m', (doc) => keys.meta(doc)],
  ['a', (doc) => keys.awareness(doc)],
  ['c', (doc) => keys.channel(doc)],
]

describe('createKeys', () => {
  it('builds the documented layout', () => {
    expect(KEY_VERSION).toBe('v1')
    expect(keys.prefix).toBe('sb')
    expect(keys.stream('notes')).toBe('sb:v1:{notes}:s')
    expect(keys.meta('notes')).toBe('sb:v1:{notes}:m')
    expect(keys.awareness('notes')).toBe('sb:v1:{notes}:a')
    expect(keys.channel('notes')).toBe('sb:v1:{notes}:c')
    expect(keys.queue(3)).toBe('sb:v1:{q3}:tasks')
    expect(keys.delayed(3)).toBe('sb:v1:{q3}:delayed')
    expect(keys.nodes).toBe('sb:v1:nodes')
    expect(keys.epoch).toBe('sb:v1:epoch')
    expect(keys.streamPattern).toBe('sb:v1:{*}:s')
  })

  it('gives every key of one document the hash tag {doc}', () => {
    for (const doc of ['notes', 'team/a/b', 'x:y:z', 'q1', 'a.b~c@d+e=f,g']) {
      for (const [, build] of docBuilders) expect(hashTag(build(doc)), build(doc)).toBe(doc)
    }
  })

  it('gives both keys of a queue shard the hash tag {q<n>}', () => {
    for (const shard of [0, 7, 1023]) {
      expect(hashTag(keys.queue(shard))).toBe(`q${shard}`)
      expect(hashTag(keys.delayed(shard))).toBe(`q${shard}`)
    }
  })

  it('keeps the prefix, also one containing colons', () => {
    const nested = createKeys('app:prod-1')
    expect(nested.stream('d')).toBe('app:prod-1:v1:{d}:s')
    expect(nested.decode(nested.stream('d'))).toEqual({ doc: 'd', kind: 's' })
  })

  it.each(['', 'has space', '{tag}', 'a/b', 'x'.repeat(65), 'caf\u00e9', 'a*'])(
    'rejects the prefix %j',
    (prefix) => {
      expect(() => createKeys(prefix)).toThrow(TypeError)
      expect(() => createKeys(prefix)).toThrow(`got ${JSON.stringify(prefix)}`)
    },
  )

  it('accepts a prefix of 64 characters', () => {
    expect(createKeys('p'.repeat(64)).nodes).toBe(`${'p'.repeat(64)}:v1:nodes`)
  })
})

describe('decode', () => {
  it.each(['notes', 'team/a/b', 'a:b', 'x:s', 'q1', 'q1/tasks', 'nodes', 'a/b:c/d:e', '-_.~:@+=,'])(
    'inverts every per-document builder for %j',
    (doc) => {
      for (const [kind, build] of docBuilders)
        expect(keys.decode(build(doc))).toEqual({ doc, kind })
    },
  )

  it('returns null for the keys that are not document keys', () => {
    expect(keys.decode(keys.queue(1))).toBeNull()
    expect(keys.decode(keys.delayed(1))).toBeNull()
    expect(keys.decode(keys.queue(0))).toBeNull()
    expect(keys.decode(keys.nodes)).toBeNull()
    expect(keys.decode(keys.epoch)).toBeNull()
  })

  it.each([
    ['another prefix', 'other:v1:{notes}:s'],
    ['a prefix that extends this one', 'sb2:v1:{notes}:s'],
    ['a longer prefix with this one as its first part', 'sb:x:v1:{notes}:s'],
    ['another key version', 'sb:v2:{notes}:s'],
    ['an unknown kind', 'sb:v1:{notes}:x'],
    ['a kind with extra characters', 'sb:v1:{notes}:ss'],
    ['an empty document', 'sb:v1:{}:s'],
    ['no closing brace', 'sb:v1:{notes:s'],
    ['no kind', 'sb:v1:{notes}'],
    ['an empty string', ''],
  ])('returns null for %s', (_name, key) => {
    expect(keys.decode(key)).toBeNull()
  })

  it('does not decode keys of another prefix', () => {
    const other = createKeys('sb:tenant')
    expect(keys.decode(other.stream('notes'))).toBeNull()
    expect(other.decode(keys.stream('notes'))).toBeNull()
  })
})

describe('shardOf', () => {
  it('is FNV-1a over the name', () => {
    // Reference FNV-1a 32-bit values: "a" = 0xe40c292c, "foobar" = 0xbf9cf968.
    expect(shardOf('a', 2 ** 32)).toBe(0xe40c292c)
    expect(shardOf('foobar', 2 ** 32)).toBe(0xbf9cf968)
    expect(shardOf('', 2 ** 32)).toBe(0x811c9dc5)
  })

  it('is stable and in range', () => {
    for (const shards of [1, 2, 8, 1024]) {
      for (let i = 0; i < 200; i++) {
        const doc = `team/${i}/notes`
        const shard = shardOf(doc, shards)
        expect(shard).toBe(shardOf(doc, shards))
        expect(Number.isInteger(shard)).toBe(true)
        expect(shard).toBeGreaterThanOrEqual(0)
        expect(shard).toBeLessThan(shards)
      }
    }
  })

  it('spreads 10k names roughly evenly over 8 shards', () => {
    const counts = new Array<number>(8).fill(0)
    for (let i = 0; i < 10_000; i++) {
      const shard = shardOf(`doc-${i}`, 8)
      counts[shard] = (counts[shard] ?? 0) + 1
    }
    expect(counts.reduce((a, b) => a + b, 0)).toBe(10_000)
    for (const count of counts) {
      expect(count).toBeGreaterThan(1250 * 0.9)
      expect(count).toBeLessThan(1250 * 1.1)
    }
  })
})
