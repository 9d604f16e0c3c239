import type { S3Client } from '@aws-sdk/client-s3'
import { AppError, failure, guarded, type Logger, silentLogger } from '@streambed/common'
import { BATCH_CONCURRENCY, type Blobs, isLogName, isStateName, mapLimit } from './blobs.js'
import type { DocStorage } from './storage.js'
import { createVersionedStorage } from './versioned-objects.js'

/**
 * S3 storage (AWS S3 or any S3-compatible server): the versioned-object scheme of
 * versioned-objects.ts, in objects:
 *
 *   <prefix>v1/docs/<escaped>/state/<sortable watermark>.ydoc     state versions (encodeStateFile)
 *   <prefix>v1/docs/<escaped>/log/<first>_<last>.ylog             update log batches and segments
 *   <prefix>v1/docs/<escaped>/checkpoints/<sortable upTo>.ydoc    checkpoints (encodeStateFile)
 *
 * There is no critical section, so compare-and-set is not strict: writers racing from one
 * watermark may all return true, and the highest of them is what loads (the guarantee is spelled
 * out in versioned-objects.ts). A new state version is PUT with `If-None-Match: *`: servers that
 * honour it turn two writers of the same watermark into one winner (412 or 409 → false); some
 * S3-compatible servers (s3rver among them) ignore it, and correctness does not rest on it.
 * Many documents stored at once (compareAndSetMany, appendLogMany) are PUT in parallel, each to
 * the end: one failed PUT fails the call without cutting the others short.
 * Deleting old state versions is best effort: a failure is logged as a warning and the next write
 * deletes them. delete() lists and deletes every key under the document's folder.
 *
 * Listing uses ListObjects (V1), paging with `Marker` = the last key seen: every S3 service
 * supports it, while s3rver answers any truncated ListObjectsV2 page with InternalError (its
 * continuation tokens use the DES cipher, which Node >= 20 with OpenSSL 3 refuses). list() and
 * listHistory() scan the keys under `v1/docs/` (skipping the rest of a document's log or
 * checkpoints where a page ends inside them) instead of asking for common prefixes with a `/`
 * delimiter: that finds exactly the documents that have a state version (or history) without a
 * request per document, and s3rver's delimiter listing misses prefixes whose objects lie two
 * levels deeper.
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

const errorName = (err: unknown): string | undefined => (err as { name?: string } | null)?.name
const httpStatus = (err: unknown): number | undefined =>
  (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode

export const createS3Storage = async (opts: S3StorageOptions): Promise<DocStorage> => {
  // Loaded here, not at the top: a node on another backend never loads the SDK.
  const {
    DeleteObjectsCommand,
    GetObjectCommand,
    HeadBucketCommand,
    ListObjectsCommand,
    PutObjectCommand,
  } = await import('@aws-sdk/client-s3')
  const { client, bucket } = opts
  const prefix = opts.prefix ?? ''
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
    throw failure('STORAGE_UNAVAILABLE', `S3 bucket ${bucket} did not answer`, err)
  }

  const docsPrefix = `${prefix}v1/docs/`

  /** One page of objects under `Prefix` after `Marker`, as the server returns them. */
  const listPage = async (Prefix: string, Marker: string | undefined) => {
    const res = await client.send(new ListObjectsCommand({ Bucket: bucket, Prefix, Marker }))
    const objects = (res.Contents ?? []).flatMap((o) =>
      o.Key === undefined ? [] : [{ key: o.Key, bytes: o.Size ?? 0 }],
    )
    return { objects, keys: objects.map((o) => o.key), truncated: res.IsTruncated === true }
  }

  /** Every object under `Prefix`. */
  const listObjects = async (Prefix: string) => {
    const objects: { key: string; bytes: number }[] = []
    for (let after: string | undefined; ;) {
      const page = await listPage(Prefix, after)
      objects.push(...page.objects)
      after = page.keys.at(-1)
      if (!page.truncated || after === undefined) return objects
    }
  }

  /** The objects directly in `folder`, by name. */
  const listFolder = async (folder: string): Promise<Map<string, number>> => {
    const sizes = new Map<string, number>()
    for (const { key, bytes } of await listObjects(folder)) {
      const name = key.slice(folder.length)
      if (!name.includes('/')) sizes.set(name, bytes)
    }
    return sizes
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

  const put: Blobs['put'] = async (Key, Body, { ifAbsent }) => {
    try {
      await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key,
          Body,
          ContentType: 'application/octet-stream',
          ...(ifAbsent ? { IfNoneMatch: '*' } : {}),
        }),
      )
      return true
    } catch (err) {
      // 412: another writer stored this key first; 409: it is storing it right now.
      const status = httpStatus(err)
      if (ifAbsent && (status === 412 || status === 409)) return false
      throw err
    }
  }

  const blobs: Blobs = {
    folders: (escaped) => {
      const doc = `${docsPrefix}${escaped}/`
      return {
        state: `${doc}state/`,
        log: `${doc}log/`,
        checkpoints: `${doc}checkpoints/`,
        all: [doc],
      }
    },
    list: async (folder) => [...(await listFolder(folder)).keys()],
    listSized: listFolder,
    /**
     * One pass over the keys under `v1/docs/`; where a page ends inside a document's log or
     * checkpoints, the rest of them is skipped (they cannot name another document).
     */
    documents: async (kind) => {
      const found = new Map<string, string>()
      for (let after: string | undefined; ;) {
        const page = await listPage(docsPrefix, after)
        for (const key of page.keys) {
          const [escaped, folder, name, ...deeper] = key.slice(docsPrefix.length).split('/')
          if (escaped === undefined || name === undefined || deeper.length > 0) continue
          if (kind === 'state') {
            if (folder !== 'state' || !isStateName(name)) continue
            const seen = found.get(escaped)
            if (seen === undefined || key > seen) found.set(escaped, key)
          } else if (
            !found.has(escaped) &&
            (folder === 'checkpoints' ? isStateName(name) : folder === 'log' && isLogName(name))
          ) {
            found.set(escaped, key)
          }
        }
        const last = page.keys.at(-1)
        if (!page.truncated || last === undefined) return found
        const [escaped, folder, ...inside] = last.slice(docsPrefix.length).split('/')
        // Keys from `<escaped>/log/` up to `<escaped>/log0` are exactly that document's log.
        const skip = (folder === 'log' || folder === 'checkpoints') && inside.length > 0
        after = skip ? `${docsPrefix}${escaped}/${folder}0` : last
      }
    },
    get: async (Key, rangeBytes) => {
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
    },
    put,
    /**
     * Every object is put, whatever happens to the others: one that fails fails the call, but only
     * once every other put has ended (stored or not), so that none is cut short.
     */
    putMany: async (puts) => {
      const settled = await mapLimit(puts, BATCH_CONCURRENCY, (p) =>
        put(p.key, p.bytes, p).then(
          (stored) => ({ stored }),
          (err: unknown) => ({ err }),
        ),
      )
      const failed = settled.find((s) => 'err' in s)
      if (failed) throw failed.err
      return settled.map((s) => 'stored' in s && s.stored)
    },
    delete: deleteKeys,
    deleteAll: async (folder) => deleteKeys((await listObjects(folder)).map((o) => o.key)),
  }

  return createVersionedStorage(blobs, {
    kind: 's3',
    logger: opts.logger ?? silentLogger(),
    ping: () =>
      guarded('STORAGE_UNAVAILABLE', `S3 bucket ${bucket} did not answer`, async () => {
        await client.send(new HeadBucketCommand({ Bucket: bucket }))
      }),
    close: async () => {
      client.destroy()
    },
  })
}
