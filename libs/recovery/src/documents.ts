/**
 * What the recovery operations work with, and the one way they find a deployment's documents.
 */
import { guarded } from '@streambed/common'
import type { DocStorage } from '@streambed/storage'
import { type DocStreams, type Keys, type Redis, masters } from '@streambed/streams'

/** The handles every recovery function takes (the caller owns and closes them). */
export interface RecoveryDeps {
  /** A command connection to the deployment's Redis. */
  readonly redis: Redis
  readonly keys: Keys
  readonly storage: DocStorage
  /** The normal write path (appends strip what a document has, see decision 0010). */
  readonly streams: DocStreams
  /** QUEUE_SHARDS of the deployment: a restored document's task goes to its shard. */
  readonly queueShards: number
}

/** Names per storage listing page. */
const PAGE = 1000

/** Every name a paged storage listing returns. */
const listAll = async (
  list: (opts: { after?: string; limit: number }) => Promise<string[]>,
): Promise<string[]> => {
  const out: string[] = []
  for (let after: string | undefined; ;) {
    const page = await list(after === undefined ? { limit: PAGE } : { after, limit: PAGE })
    out.push(...page)
    after = page.at(-1)
    if (page.length < PAGE || after === undefined) return out
  }
}

/** Names of documents with stored state. */
export const storedDocuments = (storage: DocStorage): Promise<string[]> =>
  guarded('STORAGE_UNAVAILABLE', 'list documents', () => listAll((o) => storage.list(o)))

/** Names of documents with history (update log or checkpoints). */
export const documentsWithHistory = (storage: DocStorage): Promise<string[]> =>
  guarded('STORAGE_UNAVAILABLE', 'list document histories', () =>
    listAll((o) => storage.listHistory(o)),
  )

/**
 * Keys matching `pattern` that `keep` accepts (SCAN: keys written meanwhile may or may not show);
 * stops once `limit` were found.
 */
export const scanKeys = (
  redis: Redis,
  pattern: string,
  opts: { limit?: number; keep?: (key: string) => boolean } = {},
): Promise<string[]> =>
  guarded('REDIS_UNAVAILABLE', `scan ${pattern}`, async () => {
    const { limit = Infinity, keep = () => true } = opts
    const found = new Set<string>()
    // SCAN walks one server: on a cluster, every master.
    for (const node of masters(redis)) {
      let cursor = '0'
      do {
        const [next, batch] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
        for (const key of batch) if (keep(key)) found.add(key)
        cursor = next
      } while (cursor !== '0' && found.size < limit)
      if (found.size >= limit) break
    }
    return [...found]
  })

/** Names of documents that have a stream in Redis (entries not compacted yet, or not trimmed). */
export const streamDocuments = async (redis: Redis, keys: Keys): Promise<string[]> => {
  const names: string[] = []
  for (const key of await scanKeys(redis, keys.streamPattern)) {
    const decoded = keys.decode(key)
    if (decoded?.kind === 's') names.push(decoded.doc)
  }
  return names.sort()
}

export interface DocumentSources {
  stored?: boolean
  history?: boolean
  streams?: boolean
}

/**
 * Every document found in the sources asked for (all by default): stored state, history, Redis
 * streams; ascending, each name once.
 */
export const allDocuments = async (
  deps: Pick<RecoveryDeps, 'redis' | 'keys' | 'storage'>,
  sources: DocumentSources = {},
): Promise<string[]> => {
  const { stored = true, history = true, streams = true } = sources
  const names = new Set<string>()
  if (stored) for (const n of await storedDocuments(deps.storage)) names.add(n)
  if (history) for (const n of await documentsWithHistory(deps.storage)) names.add(n)
  if (streams) for (const n of await streamDocuments(deps.redis, deps.keys)) names.add(n)
  return [...names].sort()
}

/** `items` in consecutive batches of `size` (at least one item each). */
export const inBatches = <T>(items: readonly T[], size: number): T[][] => {
  const n = Math.max(1, Math.floor(size))
  const out: T[][] = []
  for (let i = 0; i < items.length; i += n) out.push(items.slice(i, i + n))
  return out
}

/** Runs `fn` over `items` with at most `limit` at once; results in item order. */
export const mapLimit = async <T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> => {
  const out = new Array<R>(items.length)
  let next = 0
  const run = async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i] as T, i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run))
  return out
}
