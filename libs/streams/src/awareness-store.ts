import { createHash } from 'node:crypto'
import type { Redis } from './redis.js'
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
  /** Tag of the owner's token subject (see `subjectTag`), `-` for none. */
  readonly subjectTag: string
}

/** Who sends an awareness update, and what it may take (see awareness-set-1.lua). */
export interface AwarenessSender {
  /** `<nodeId>~<token>/<connectionId>` of the sending connection. */
  readonly origin: string
  /** `subjectTag(sub)` of its token; `-` for anonymous connections. */
  readonly subjectTag: string
  /** New client ids it may still take (its limit minus the ids it holds). */
  readonly mayTake: number
}

export interface PublishResult {
  /** The entries that were news from the id's owner: stored and relayed. */
  readonly accepted: AwarenessEntry[]
  /** Entries refused because another connection owns the client id. */
  readonly spoofed: number
  /** Entries refused because the connection holds as many client ids as it may. */
  readonly overLimit: number
}

export interface AwarenessStoreOptions {
  redis: Redis
  keys: Keys
  /** TTL of a document's awareness hash, renewed on each update; default 60 s. */
  hashTtlMs?: number
  /** A state not renewed for this long may be taken over by another connection; default 30 s. */
  staleMs?: number
}

export interface AwarenessStore {
  /**
   * Stores the entries `sender` sent that are news from the client id's owner (see
   * awareness-set-1.lua) and relays them to every node serving `doc`.
   */
  publish(
    doc: string,
    sender: AwarenessSender,
    entries: readonly AwarenessEntry[],
  ): Promise<PublishResult>
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
  const header = value.toString('utf8', 0, Math.max(eol, 0))
  const m = eol < 0 ? null : /^(\d+) (([^~\s]+)\S*) (\d+) (\S+)$/.exec(header)
  if (!m) return null
  return {
    clientId: Number(clientId),
    clock: Number(m[1]),
    owner: m[2] as string,
    nodeId: m[3] as string,
    updatedAtMs: Number(m[4]),
    subjectTag: m[5] as string,
    state: value.toString('utf8', eol + 1),
  }
}

export const createAwarenessStore = (opts: AwarenessStoreOptions): AwarenessStore => {
  const { redis, keys } = opts
  const ttl = opts.hashTtlMs ?? 60_000
  const staleMs = opts.staleMs ?? 30_000
  return {
    publish: (doc, sender, entries) =>
      guarded('REDIS_UNAVAILABLE', `awareness of ${doc}`, async () => {
        const { origin, subjectTag, mayTake } = sender
        const args: (string | number)[] = [
          keys.channel(doc),
          origin,
          ttl,
          subjectTag,
          staleMs,
          Math.max(0, mayTake),
        ]
        for (const e of entries) args.push(String(e.clientId), e.clock, e.state)
        const reply = (await scripts.awarenessSet.run(redis, [keys.awareness(doc)], args)) as (
          Buffer | number
        )[]
        const accepted: AwarenessEntry[] = []
        for (let i = 2; i + 2 < reply.length; i += 3) {
          accepted.push({
            clientId: Number(String(reply[i])),
            clock: Number(reply[i + 1]),
            state: String(reply[i + 2]),
          })
        }
        return { accepted, spoofed: Number(reply[0]), overLimit: Number(reply[1]) }
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

/** The tag of a token subject kept in awareness records: a hash, not the subject itself. */
export const subjectTag = (subject: string | undefined): string =>
  subject === undefined || subject === ''
    ? '-'
    : createHash('sha256').update(subject).digest('hex').slice(0, 16)
