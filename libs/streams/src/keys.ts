/**
 * The Redis key layout: the only place that builds or parses key names.
 *
 *   <prefix>:v1:{<doc>}:s        stream of updates (entries: u = update, o = origin)
 *   <prefix>:v1:{<doc>}:m        hash: last (last entry id), task (token of the pending compaction
 *                                task), trimmed (entries with smaller ids are gone)
 *   <prefix>:v1:{<doc>}:a        hash: awareness states by client id
 *   <prefix>:v1:{<doc>}:c        sharded pub/sub channel: doorbells and awareness relay
 *   <prefix>:v1:{q<n>}:tasks     compaction task queue shard n (stream, one consumer group)
 *   <prefix>:v1:{q<n>}:delayed   sorted set of tasks waiting for their due time (shard n)
 *   <prefix>:v1:nodes            sorted set: server node id -> last heartbeat (Redis time, ms)
 *   <prefix>:v1:epoch            random value written once; its loss means Redis lost its data
 *   <prefix>:v1:revoked:<kind>:<value>   Redis time (ms) tokens were revoked at (kind sub, jti,
 *                                doc), with a TTL: tokens issued before it are refused
 *   <prefix>:v1:revocations      sharded pub/sub channel: revocations, so nodes close matching sockets
 *   <prefix>:v1:reconciler       lock of the worker reconciling tasks (Redis Cluster only)
 *
 * Every key of one document carries the hash tag `{<doc>}` so that a Redis Cluster keeps them in one
 * slot and Lua scripts may touch them together. Document names never contain braces.
 */
export const KEY_VERSION = 'v1'

export const PREFIX_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/

export type DocKeyKind = 's' | 'm' | 'a' | 'c'

export interface Keys {
  readonly prefix: string
  stream(doc: string): string
  meta(doc: string): string
  awareness(doc: string): string
  channel(doc: string): string
  queue(shard: number): string
  delayed(shard: number): string
  readonly nodes: string
  readonly epoch: string
  revoked(kind: 'sub' | 'jti' | 'doc', value: string): string
  readonly revocations: string
  /** Glob matching every document stream key (for SCAN). */
  readonly streamPattern: string
  /** Glob matching every document meta key (for SCAN). */
  readonly metaPattern: string
  /** Held by the worker reconciling tasks on a Redis Cluster (SET NX with a TTL). */
  readonly reconciler: string
  /** Inverse of the per-document builders; `null` for keys that are not document keys. */
  decode(key: string): { doc: string; kind: DocKeyKind } | null
}

export const createKeys = (prefix: string): Keys => {
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new TypeError(
      `Redis key prefix must match ${String(PREFIX_PATTERN)}, got ${JSON.stringify(prefix)}`,
    )
  }
  const base = `${prefix}:${KEY_VERSION}:`
  const docKey = (doc: string, kind: DocKeyKind) => `${base}{${doc}}:${kind}`
  return {
    prefix,
    stream: (doc) => docKey(doc, 's'),
    meta: (doc) => docKey(doc, 'm'),
    awareness: (doc) => docKey(doc, 'a'),
    channel: (doc) => docKey(doc, 'c'),
    queue: (shard) => `${base}{q${shard}}:tasks`,
    delayed: (shard) => `${base}{q${shard}}:delayed`,
    nodes: `${base}nodes`,
    epoch: `${base}epoch`,
    revoked: (kind, value) => `${base}revoked:${kind}:${value}`,
    revocations: `${base}revocations`,
    streamPattern: `${base}{*}:s`,
    metaPattern: `${base}{*}:m`,
    reconciler: `${base}reconciler`,
    decode: (key) => {
      if (!key.startsWith(`${base}{`)) return null
      const close = key.lastIndexOf('}:')
      if (close < base.length + 1) return null
      const kind = key.slice(close + 2)
      if (kind !== 's' && kind !== 'm' && kind !== 'a' && kind !== 'c') return null
      const doc = key.slice(base.length + 1, close)
      if (doc.length === 0) return null
      return { doc, kind }
    },
  }
}

/** Stable shard of a document in the task queue (FNV-1a over the name). */
export const shardOf = (doc: string, shards: number): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < doc.length; i++) {
    h ^= doc.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return (h >>> 0) % shards
}
