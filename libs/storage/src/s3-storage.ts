import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3'
import * as decoding from 'lib0/decoding'
import { AppError, type Logger, silentLogger } from '@streambed/common'
import {
  decodeLogBatch,
  decodeStateFile,
  encodeLogBatch,
  encodeStateFile,
  escapeDocName,
  logBatchName,
  sortableWatermark,
  unescapeDocName,
  watermarkFromSortable,
} from './encoding.js'
import { compareWatermarks, type DocStorage, normaliseLog } from './storage.js'

/**
 * S3 storage (AWS S3 or any S3-compatible server).
 *
 *   <prefix>v1/docs/<escaped>/state/<sortable watermark>.ydoc   state versions (encodeStateFile)
 *   <prefix>v1/docs/<escaped>/log/<first>_<last>.ylog           update log batches (encodeLogBatch)
 *
 * `<escaped>` is escapeDocName(doc); a sortable watermark sorts like the watermark it encodes, so
 * the keys of a document's state versions sort by watermark.
 *
 * Compare-and-set without conditional writes. Some S3-compatible servers (s3rver among them)
 * ignore `If-None-Match` / `If-Match` on PUT, so correctness does not rest on them:
 * - A state version is written once, under a key naming its watermark, and not overwritten (unless
 *   a writer stores the same watermark again).
 * - load: list `state/` and read the version with the highest key; if it vanished between the
 *   listing and the read (collected by a writer), list again.
 * - compareAndSet(expected, next): list `state/`; unless the highest watermark is `expected` (no
 *   version at all for `null`) return false. Otherwise PUT next's version (with `If-None-Match: *`:
 *   servers that honour it turn two writers of the same watermark into one winner), then delete
 *   the versions older than the newest two.
 *
 * Guarantee. This is not a strict compare-and-set: writers racing from the same `expected` may all
 * find it still highest, and all return true. What holds, provided each writer builds `next` the
 * way compaction does (state(expected) merged with every entry with an id in
 * (expected, next.watermark]):
 *   1. Every stored version with watermark w contains every entry with an id <= w.
 *   2. Outside delete(), a version is deleted only by a writer that has seen two higher ones
 *      written, so the highest version ever written stays, and the watermark `load` returns never
 *      decreases.
 *   3. Once compareAndSet has returned true, `load` returns that writer's watermark or a higher
 *      one: the writer may trim its entries from the stream, they are in storage.
 *   4. compareAndSet returns false, storing nothing, when the highest watermark differs from
 *      `expected`, when `next` is below `expected`, or when a server that honours `If-None-Match`
 *      already holds a version with next's watermark.
 * So nothing is lost and the watermark never goes back; the price is that some racing writers'
 * work is superseded although they returned true.
 *
 * delete() is not atomic: a compareAndSet racing it may leave a state version behind, as if it had
 * run just after the delete.
 *
 * Listing uses ListObjects (V1), paging with `Marker` = the last key seen: every S3 service
 * supports it, while s3rver answers any truncated ListObjectsV2 page with InternalError (its
 * continuation tokens use the DES cipher, which Node >= 20 with OpenSSL 3 refuses). list() scans
 * the keys under `v1/docs/` (skipping the rest of a document's log where a page ends inside it)
 * instead of asking for common prefixes with a `/` delimiter: that finds exactly the documents that
 * have a state version without a request per document, and s3rver's delimiter listing misses
 * prefixes whose objects lie two levels deeper. Escaped names do not sort like names, so list()
 * collects every name and sorts in memory; hashed names are read from their state version's header.
 */
export interface S3StorageOptions {
  /**
   * The storage takes ownership: close() destroys it. Build it with
   * `requestChecksumCalculation: 'WHEN_REQUIRED'` and `responseChecksumValidation: 'WHEN_REQUIRED'`.
   */
  client: S3Client
  bucket: string
  /** Prepended to every key: empty (default) or ending in `/`. */
  prefix?: string
  /** Receives failures of best-effort clean-up; default silent. */
  logger?: Logger
}

/** Parallel requests within one operation (reading log batches, naming hashed documents). */
const CONCURRENCY = 8
/** Bytes read to find the document name in a state version's header. */
const HEADER_BYTES = 16 * 1024
/** How often load() lists again when the newest version keeps vanishing under it. */
const LOAD_ATTEMPTS = 5

const STATE_KEY = /\/state\/(\d{15}-\d{20})\.ydoc$/
const LOG_KEY = /\/log\/\d{15}-\d{20}_(\d{15}-\d{20})\.ylog$/
/** Below `v1/docs/`: a state version, and any key of a log, capturing the escaped name. */
const DOC_STATE_KEY = /^([^/]+)\/state\/\d{15}-\d{20}\.ydoc$/
const DOC_LOG_KEY = /^([^/]+)\/log\//

const errorName = (err: unknown): string | undefined => (err as { name?: string } | null)?.name
const httpStatus = (err: unknown): number | undefined =>
  (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode

const unavailable = (what: string, err: unknown): AppError =>
  err instanceof AppError
    ? err
    : new AppError('STORAGE_UNAVAILABLE', `${what}: ${(err as Error).message}`, { cause: err })

/** `fn` over `items`, at most `limit` at a time, results in order. */
const mapLimit = async <T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> => {
  const out: R[] = new Array<R>(items.length)
  let next = 0
  const run = async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i] as T)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run))
  return out
}

/**
 * The document name in the header of a state file's first bytes (see encoding.ts), or null when
 * `bytes` was cut before the name ended.
 */
const nameInHeader = (where: string, bytes: Uint8Array): string | null => {
  try {
    const decoder = decoding.createDecoder(bytes)
    const magic = Buffer.from(decoding.readUint8Array(decoder, 4)).toString('latin1')
    if (magic !== 'SBD1') throw new Error(`bad magic ${JSON.stringify(magic)}`)
    return decoding.readVarString(decoder)
  } catch (err) {
    // Shorter than asked for: that was the whole object, and it is broken.
    if (bytes.length < HEADER_BYTES) {
      throw new AppError('STORAGE_UNAVAILABLE', `corrupt document state ${where}`, { cause: err })
    }
    return null
  }
}

/** The watermark a state version's key names. */
const watermarkOfKey = (key: string): string => {
  const sortable = STATE_KEY.exec(key)?.[1]
  if (sortable === undefined) throw new TypeError(`not a state version key: ${key}`)
  return watermarkFromSortable(sortable)
}

export const createS3Storage = async (opts: S3StorageOptions): Promise<DocStorage> => {
  const { client, bucket } = opts
  const prefix = opts.prefix ?? ''
  const logger = opts.logger ?? silentLogger()
  if (prefix !== '' && !prefix.endsWith('/')) {
    throw new AppError('CONFIG', `S3 prefix ${JSON.stringify(prefix)} must be empty or end in "/"`)
  }
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }))
  } catch (err) {
    const status = httpStatus(err)
    if (status === 404 || status === 403) {
      const why = status === 404 ? 'does not exist' : 'is not accessible with these credentials'
      throw new AppError('CONFIG', `S3 bucket ${bucket} ${why}`, { cause: err })
    }
    throw unavailable(`S3 bucket ${bucket} did not answer`, err)
  }

  const docsPrefix = `${prefix}v1/docs/`
  const docPrefix = (escaped: string) => `${docsPrefix}${escaped}/`
  const statePrefix = (escaped: string) => `${docPrefix(escaped)}state/`
  const logPrefix = (escaped: string) => `${docPrefix(escaped)}log/`

  /** One page of keys under `Prefix` after `Marker`, as the server returns them. */
  const listPage = async (Prefix: string, Marker: string | undefined) => {
    const res = await client.send(new ListObjectsCommand({ Bucket: bucket, Prefix, Marker }))
    const keys = (res.Contents ?? []).flatMap((o) => (o.Key === undefined ? [] : [o.Key]))
    return { keys, truncated: res.IsTruncated === true }
  }

  /** Every key under `Prefix`, ascending. */
  const listKeys = async (Prefix: string): Promise<string[]> => {
    const keys: string[] = []
    for (let after: string | undefined; ;) {
      const page = await listPage(Prefix, after)
      keys.push(...page.keys)
      after = page.keys.at(-1)
      if (!page.truncated || after === undefined) return keys.sort()
    }
  }

  /** The keys of a document's state versions, ascending by watermark. */
  const stateKeys = async (escaped: string): Promise<string[]> =>
    (await listKeys(statePrefix(escaped))).filter((k) => STATE_KEY.test(k))

  /** The object's bytes (or its first `rangeBytes`), or null when there is no such key. */
  const getBytes = async (Key: string, rangeBytes?: number): Promise<Uint8Array | null> => {
    try {
      const res = await client.send(
        new GetObjectCommand({
          Bucket: bucket,
          Key,
          ...(rangeBytes === undefined ? {} : { Range: `bytes=0-${rangeBytes - 1}` }),
        }),
      )
      if (!res.Body) throw new Error(`no body for ${Key}`)
      return await res.Body.transformToByteArray()
    } catch (err) {
      if (errorName(err) === 'NoSuchKey') return null
      throw err
    }
  }

  /**
   * `read` applied to the newest state version; null when there is none. A version collected
   * between listing and reading (`read` returns null) means a newer one exists: list again.
   */
  const withNewestState = async <T>(
    escaped: string,
    read: (key: string) => Promise<T | null>,
  ): Promise<T | null> => {
    for (let attempt = 0; attempt < LOAD_ATTEMPTS; attempt++) {
      const newest = (await stateKeys(escaped)).at(-1)
      if (newest === undefined) return null
      const result = await read(newest)
      if (result !== null) return result
    }
    throw new AppError(
      'STORAGE_UNAVAILABLE',
      `the newest state of ${escaped} vanished ${LOAD_ATTEMPTS} times while being read`,
    )
  }

  const deleteKeys = async (keys: readonly string[]): Promise<void> => {
    for (let at = 0; at < keys.length; at += 1000) {
      const res = await client.send(
        new DeleteObjectsCommand({
          Bucket: bucket,
          Delete: { Objects: keys.slice(at, at + 1000).map((Key) => ({ Key })), Quiet: true },
        }),
      )
      const failed = res.Errors?.[0]
      if (failed) throw new Error(`cannot delete ${failed.Key}: ${failed.Code} ${failed.Message}`)
    }
  }

  /** The name of a document directory, or null when it is hashed; undefined when it is not ours. */
  const nameOfDir = (escaped: string): string | null | undefined => {
    if (escaped.startsWith('~')) return /^~[0-9a-f]{64}$/.test(escaped) ? null : undefined
    try {
      const name = unescapeDocName(escaped)
      return name !== null && escapeDocName(name) === escaped ? name : undefined
    } catch {
      // Malformed percent-escapes: another program's object, not a document.
      return undefined
    }
  }

  /**
   * The newest state version of every document directory that has one, by escaped name. One pass
   * over the keys under `v1/docs/`; where a page ends inside a document's log, the rest of that log
   * is skipped (it cannot name another document).
   */
  const newestStates = async (): Promise<Map<string, string>> => {
    const newest = new Map<string, string>()
    for (let after: string | undefined; ;) {
      const page = await listPage(docsPrefix, after)
      for (const key of page.keys) {
        const m = DOC_STATE_KEY.exec(key.slice(docsPrefix.length))
        if (!m) continue
        const escaped = m[1] as string
        const seen = newest.get(escaped)
        if (seen === undefined || key > seen) newest.set(escaped, key)
      }
      const last = page.keys.at(-1)
      if (!page.truncated || last === undefined) return newest
      const inLog = DOC_LOG_KEY.exec(last.slice(docsPrefix.length))
      // Keys from `<escaped>/log/` up to `<escaped>/log0` are exactly that document's log.
      after = inLog ? `${docsPrefix}${inLog[1] as string}/log0` : last
    }
  }

  /** The document name in the header of a hashed name's newest state version. */
  const hashedName = async (escaped: string, newestKey: string): Promise<string | null> => {
    const readName = async (key: string) => {
      const head = await getBytes(key, HEADER_BYTES)
      if (!head) return null
      const name = nameInHeader(key, head)
      if (name !== null) return name
      const whole = await getBytes(key)
      return whole && decodeStateFile(key, whole).doc
    }
    // Collected since the listing: a newer version exists, find it.
    return (await readName(newestKey)) ?? (await withNewestState(escaped, readName))
  }

  const storage: DocStorage = {
    kind: 's3',
    load: async (doc) => {
      try {
        return await withNewestState(escapeDocName(doc), async (key) => {
          const bytes = await getBytes(key)
          return bytes && decodeStateFile(key, bytes).stored
        })
      } catch (err) {
        throw unavailable(`cannot read ${doc}`, err)
      }
    },
    watermark: async (doc) => {
      try {
        const newest = (await stateKeys(escapeDocName(doc))).at(-1)
        return newest === undefined ? null : watermarkOfKey(newest)
      } catch (err) {
        throw unavailable(`cannot read ${doc}`, err)
      }
    },
    compareAndSet: async (doc, expected, next) => {
      try {
        if (expected !== null && compareWatermarks(next.watermark, expected) < 0) return false
        const escaped = escapeDocName(doc)
        const keys = await stateKeys(escaped)
        const newest = keys.at(-1)
        const current = newest === undefined ? null : watermarkOfKey(newest)
        const matches =
          current === null || expected === null
            ? current === expected
            : compareWatermarks(current, expected) === 0
        if (!matches) return false
        const key = `${statePrefix(escaped)}${sortableWatermark(next.watermark)}.ydoc`
        try {
          await client.send(
            new PutObjectCommand({
              Bucket: bucket,
              Key: key,
              Body: encodeStateFile(doc, next),
              ContentType: 'application/octet-stream',
              // Storing `expected`'s watermark again replaces that version; a new one must be new.
              ...(key === newest ? {} : { IfNoneMatch: '*' }),
            }),
          )
        } catch (err) {
          // 412: another writer stored this watermark first; 409: it is storing it right now.
          const status = httpStatus(err)
          if (status === 412 || status === 409) return false
          throw err
        }
        // Versions below the newest two. Writers racing us collect what we do not see.
        const old = [...new Set([...keys, key])].sort().slice(0, -2)
        if (old.length > 0) {
          await deleteKeys(old).catch((err: unknown) =>
            logger.warn({ err, doc }, 'could not delete old state versions; the next write will'),
          )
        }
        return true
      } catch (err) {
        throw unavailable(`cannot store ${doc}`, err)
      }
    },
    appendLog: async (doc, entries) => {
      if (entries.length === 0) return
      try {
        await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: `${logPrefix(escapeDocName(doc))}${logBatchName(entries)}.ylog`,
            Body: encodeLogBatch(doc, entries),
            ContentType: 'application/octet-stream',
          }),
        )
      } catch (err) {
        throw unavailable(`cannot archive ${doc}`, err)
      }
    },
    readLog: async (doc, readOpts = {}) => {
      try {
        const after = readOpts.after === undefined ? undefined : sortableWatermark(readOpts.after)
        const keys = (await listKeys(logPrefix(escapeDocName(doc)))).filter((k) => {
          const last = LOG_KEY.exec(k)?.[1]
          // A batch whose last entry is not above `after` has nothing to give.
          return last !== undefined && (after === undefined || last > after)
        })
        const batches = await mapLimit(keys, CONCURRENCY, async (key) => {
          const bytes = await getBytes(key)
          // Gone meanwhile: the document is being deleted.
          return bytes ? decodeLogBatch(key, bytes) : []
        })
        return normaliseLog(batches.flat(), readOpts.after)
      } catch (err) {
        throw unavailable(`cannot read the update log of ${doc}`, err)
      }
    },
    delete: async (doc) => {
      try {
        await deleteKeys(await listKeys(docPrefix(escapeDocName(doc))))
      } catch (err) {
        throw unavailable(`cannot delete ${doc}`, err)
      }
    },
    list: async ({ after, limit = 1000 } = {}) => {
      try {
        // Escaped names do not sort like names: collect every name, then sort and page.
        const names: string[] = []
        const hashed: [string, string][] = []
        for (const [escaped, newestKey] of await newestStates()) {
          const name = nameOfDir(escaped)
          if (name === null) hashed.push([escaped, newestKey])
          else if (name !== undefined) names.push(name)
        }
        const resolved = await mapLimit(hashed, CONCURRENCY, ([escaped, key]) =>
          hashedName(escaped, key),
        )
        resolved.forEach((name, i) => {
          if (name !== null && escapeDocName(name) === hashed[i]?.[0]) names.push(name)
        })
        return names
          .filter((n) => after === undefined || n > after)
          .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
          .slice(0, limit)
      } catch (err) {
        throw unavailable('cannot list documents', err)
      }
    },
    ping: async () => {
      try {
        await client.send(new HeadBucketCommand({ Bucket: bucket }))
      } catch (err) {
        throw unavailable(`S3 bucket ${bucket} did not answer`, err)
      }
    },
    close: async () => {
      client.destroy()
    },
  }
  return storage
}
