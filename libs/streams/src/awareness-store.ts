import type { Redis } from 'ioredis'
import { guarded } from '@streambed/common'
import type { AwarenessEntry } from '@streambed/protocol'
import type { Keys } from './keys.js'
import { scripts } from './scripts.js'

/** One client's awareness state as stored in `<p>:v1:{doc}:a`. */
export interface AwarenessRecord extends AwarenessEntry {
  /** Origin (`<nodeId>~<token>/<connectionId>`) of the connection that announced it. */
  readonly owner: string
  /** Server node that holds that connection. */
  readonly nodeId: string
  /** Redis time of the last update, ms. */
  readonly updatedAtMs: number
}

export interface AwarenessStoreOptions {
  redis: Redis
  keys: Keys
  /** TTL of a document's awareness hash, renewed on each update; default 60 s. */
  hashTtlMs?: number
}

export interface AwarenessStore {
  /**
   * Stores the entries sent by the connection `origin` that are news (see awareness-set-1.lua),
   * relays those to every node serving `doc`, and returns them.
   */
  publish(
    doc: string,
    origin: string,
    entries: readonly AwarenessEntry[],
  ): Promise<AwarenessEntry[]>
  /** Every stored state of `doc`, unfiltered. */
  load(doc: string): Promise<AwarenessRecord[]>
  /**
   * Removes states owned by `deadNodes` or not renewed for `staleMs`, announcing their removal to
   * every node serving `doc`. Returns how many were removed.
   */
  expire(doc: string, origin: string, staleMs: number, deadNodes: Iterable<string>): Promise<number>
}

const parseRecord = (clientId: string, value: Buffer): AwarenessRecord | null => {
  const eol = value.indexOf(0x0a)
  const m = eol < 0 ? null : /^(\d+) (([^~\s]+)\S*) (\d+)$/.exec(value.toString('utf8', 0, eol))
  if (!m) return null
  return {
    clientId: Number(clientId),
    clock: Number(m[1]),
    owner: m[2] as string,
    nodeId: m[3] as string,
    updatedAtMs: Number(m[4]),
    state: value.toString('utf8', eol + 1),
  }
}

export const createAwarenessStore = (opts: AwarenessStoreOptions): AwarenessStore => {
  const { redis, keys } = opts
  const ttl = opts.hashTtlMs ?? 60_000
  return {
    publish: (doc, origin, entries) =>
      guarded('REDIS_UNAVAILABLE', `awareness of ${doc}`, async () => {
        const args: (string | number)[] = [keys.channel(doc), origin, ttl]
        for (const e of entries) args.push(String(e.clientId), e.clock, e.state)
        const accepted = (await scripts.awarenessSet.run(redis, [keys.awareness(doc)], args)) as (
          Buffer | number
        )[]
        const out: AwarenessEntry[] = []
        for (let i = 0; i + 2 < accepted.length; i += 3) {
          out.push({
            clientId: Number(String(accepted[i])),
            clock: Number(accepted[i + 1]),
            state: String(accepted[i + 2]),
          })
        }
        return out
      }),
    load: (doc) =>
      guarded('REDIS_UNAVAILABLE', `awareness of ${doc}`, async () => {
        const raw = await redis.hgetallBuffer(keys.awareness(doc))
        const out: AwarenessRecord[] = []
        for (const [clientId, value] of Object.entries(raw)) {
          const record = parseRecord(clientId, value)
          if (record) out.push(record)
        }
        return out
      }),
    expire: (doc, origin, staleMs, deadNodes) =>
      guarded('REDIS_UNAVAILABLE', `awareness of ${doc}`, async () => {
        const removed = await scripts.awarenessExpire.run(
          redis,
          [keys.awareness(doc)],
          [keys.channel(doc), origin, staleMs, ...deadNodes],
        )
        return Number(removed)
      }),
  }
}
