/**
 * Where backups go: a local directory or an S3 prefix (`s3://bucket/prefix/`), as one small
 * interface of named objects. Paths are relative, `/`-separated, without empty, `.` or `..`
 * segments. Writes are durable when `put` resolves: fs writes a temporary file, fsyncs it, renames
 * it into place and fsyncs the directory (and the parents of directories it created); an S3 PUT is
 * durable once answered.
 */
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsCommand,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3'
import { AppError, fsyncDir, guarded, isMissing, writeSynced } from '@streambed/common'

export interface TargetObject {
  /** Relative to the target. */
  readonly path: string
  readonly bytes: number
}

export interface BackupTarget {
  /** The directory (absolute) or `s3://bucket/prefix/`, for messages and manifests. */
  readonly location: string
  /** Stores `bytes` under `path`, replacing what was there; durable once it resolves. */
  put(path: string, bytes: Uint8Array): Promise<void>
  /** The object's bytes, or null when there is none. */
  get(path: string): Promise<Uint8Array | null>
  /** Every object whose path starts with `prefix` (all by default), ascending by path. */
  list(prefix?: string): Promise<TargetObject[]>
  exists(path: string): Promise<boolean>
  /** Removes every object whose path starts with `prefix` (a non-empty folder prefix ending in `/`). */
  removeAll(prefix: string): Promise<void>
  /** Releases the S3 client (fs: nothing). */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

export interface BackupTargetOptions {
  /**
   * S3 client settings for `s3://` locations, e.g. `s3ClientConfig(config)` of @streambed/storage
   * (the deployment's S3_* variables). Checksums are only sent and checked when required (what
   * s3rver and some other S3-compatible servers need) unless these settings say otherwise.
   */
  s3?: S3ClientConfig
}

const S3_LOCATION = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/

/** Throws `AppError('BAD_MESSAGE')` unless `path` is a relative path of clean segments. */
const checkPath = (path: string, folder = false): string => {
  const body = folder && path.endsWith('/') ? path.slice(0, -1) : path
  const ok =
    body.length > 0 &&
    !body.includes('\\') &&
    !body.includes('\0') &&
    body.split('/').every((s) => s !== '' && s !== '.' && s !== '..')
  if (!ok) throw new AppError('BAD_MESSAGE', `not a relative object path: ${JSON.stringify(path)}`)
  return path
}

/** `location` with `name` appended as one more folder (`<dir>/<name>` or `s3://b/p/<name>/`). */
export const subLocation = (location: string, name: string): string => {
  checkPath(name)
  if (S3_LOCATION.test(location)) return `${location.replace(/\/?$/, '/')}${name}/`
  return join(location, name)
}

/** Whether `location` names an S3 prefix. */
export const isS3Location = (location: string): boolean => location.startsWith('s3://')

/**
 * The target at `location`: `s3://bucket/prefix/` (the prefix may be empty), else a local
 * directory (relative to the working directory; created on the first put). No I/O until used.
 * Throws `AppError('CONFIG')` for an `s3://` location that does not name a bucket.
 */
export const openBackupTarget = (
  location: string,
  opts: BackupTargetOptions = {},
): BackupTarget => {
  if (!isS3Location(location)) return fsTarget(resolve(location))
  const m = S3_LOCATION.exec(location)
  if (!m?.[1])
    throw new AppError(
      'CONFIG',
      `backup location ${JSON.stringify(location)}: expected s3://<bucket>/<prefix>/ with a bucket name of 3-63 of a-z 0-9 . -`,
    )
  const rest = m[2] ?? ''
  const prefix = rest === '' || rest.endsWith('/') ? rest : `${rest}/`
  if (prefix !== '') checkPath(prefix, true)
  const client = new S3Client({
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...opts.s3,
  })
  return s3Target(client, m[1], prefix)
}

/** Creates `dir` and its missing parents, syncing the parent of each one created. */
const ensureDir = async (dir: string): Promise<void> => {
  try {
    if ((await stat(dir)).isDirectory()) return
  } catch (err) {
    if (!isMissing(err)) throw err
  }
  await ensureDir(dirname(dir))
  try {
    await mkdir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    return
  }
  await fsyncDir(dirname(dir))
}

let tmpCounter = 0
const TMP = /^\..+\.\d+-\d+\.tmp$/

const fsTarget = (root: string): BackupTarget => {
  const where = (what: string) => `backup directory ${root}: ${what}`
  const full = (path: string) => join(root, ...checkPath(path).split('/'))

  const walk = async (dir: string, rel: string, out: TargetObject[]): Promise<void> => {
    let names: string[]
    try {
      names = await readdir(dir)
    } catch (err) {
      if (isMissing(err)) return
      throw err
    }
    for (const name of names) {
      if (TMP.test(name)) continue
      const path = join(dir, name)
      const info = await stat(path).catch((err: unknown) => {
        if (isMissing(err)) return null
        throw err
      })
      if (!info) continue
      if (info.isDirectory()) await walk(path, `${rel}${name}/`, out)
      else out.push({ path: `${rel}${name}`, bytes: info.size })
    }
  }

  const list = (prefix = '') =>
    guarded('STORAGE_UNAVAILABLE', where(`list ${prefix}`), async () => {
      // Walk from the deepest folder the prefix names.
      const folder = prefix.slice(0, prefix.lastIndexOf('/') + 1)
      const out: TargetObject[] = []
      await walk(folder === '' ? root : full(folder.slice(0, -1)), folder, out)
      return out.filter((o) => o.path.startsWith(prefix)).sort((a, b) => cmp(a.path, b.path))
    })

  const close = async () => undefined
  return {
    location: root,
    put: (path, bytes) =>
      guarded('STORAGE_UNAVAILABLE', where(`write ${path}`), async () => {
        const file = full(path)
        const dir = dirname(file)
        await ensureDir(dir)
        const tmp = join(dir, `.${file.slice(dir.length + 1)}.${process.pid}-${++tmpCounter}.tmp`)
        try {
          await writeSynced(tmp, bytes)
          await rename(tmp, file)
          await fsyncDir(dir)
        } catch (err) {
          await rm(tmp, { force: true })
          throw err
        }
      }),
    get: (path) =>
      guarded('STORAGE_UNAVAILABLE', where(`read ${path}`), async () => {
        try {
          return new Uint8Array(await readFile(full(path)))
        } catch (err) {
          if (isMissing(err)) return null
          throw err
        }
      }),
    list,
    exists: (path) =>
      guarded('STORAGE_UNAVAILABLE', where(`stat ${path}`), async () => {
        try {
          return (await stat(full(path))).isFile()
        } catch (err) {
          if (isMissing(err)) return false
          throw err
        }
      }),
    removeAll: (prefix) =>
      guarded('STORAGE_UNAVAILABLE', where(`remove ${prefix}`), async () => {
        checkPath(prefix, true)
        if (!prefix.endsWith('/')) throw new TypeError(`removeAll takes a folder: ${prefix}`)
        const dir = full(prefix.slice(0, -1))
        if (!dir.startsWith(`${root}${sep}`)) throw new TypeError(`outside the target: ${prefix}`)
        await rm(dir, { recursive: true, force: true })
      }),
    close,
    [Symbol.asyncDispose]: close,
  }
}

/** Code-unit order (S3 lists keys in UTF-8 byte order, which agrees for our ASCII paths). */
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

const errorName = (err: unknown): string | undefined => (err as { name?: string } | null)?.name
const httpStatus = (err: unknown): number | undefined =>
  (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode
const notFound = (err: unknown) =>
  errorName(err) === 'NoSuchKey' || errorName(err) === 'NotFound' || httpStatus(err) === 404

const s3Target = (client: S3Client, bucket: string, prefix: string): BackupTarget => {
  const location = `s3://${bucket}/${prefix}`
  const where = (what: string) => `backup location ${location}: ${what}`
  const key = (path: string) => `${prefix}${checkPath(path)}`

  const list = (sub = '') =>
    guarded('STORAGE_UNAVAILABLE', where(`list ${sub}`), async () => {
      const out: TargetObject[] = []
      // ListObjects (V1) with Marker: s3rver fails truncated ListObjectsV2 pages (see s3-storage.ts).
      for (let marker: string | undefined; ;) {
        const res = await client.send(
          new ListObjectsCommand({ Bucket: bucket, Prefix: `${prefix}${sub}`, Marker: marker }),
        )
        const keys = (res.Contents ?? []).flatMap((o) =>
          o.Key === undefined ? [] : [{ path: o.Key.slice(prefix.length), bytes: o.Size ?? 0 }],
        )
        out.push(...keys)
        marker = res.Contents?.at(-1)?.Key
        if (res.IsTruncated !== true || marker === undefined) break
      }
      return out.sort((a, b) => cmp(a.path, b.path))
    })

  const close = async () => client.destroy()
  return {
    location,
    put: (path, bytes) =>
      guarded('STORAGE_UNAVAILABLE', where(`write ${path}`), async () => {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: key(path), Body: bytes }))
      }),
    get: (path) =>
      guarded('STORAGE_UNAVAILABLE', where(`read ${path}`), async () => {
        try {
          const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key(path) }))
          if (!res.Body) return new Uint8Array(0)
          return await res.Body.transformToByteArray()
        } catch (err) {
          if (notFound(err)) return null
          throw err
        }
      }),
    list,
    exists: (path) =>
      guarded('STORAGE_UNAVAILABLE', where(`head ${path}`), async () => {
        try {
          await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key(path) }))
          return true
        } catch (err) {
          if (notFound(err)) return false
          throw err
        }
      }),
    removeAll: (sub) =>
      guarded('STORAGE_UNAVAILABLE', where(`remove ${sub}`), async () => {
        checkPath(sub, true)
        if (!sub.endsWith('/')) throw new TypeError(`removeAll takes a folder: ${sub}`)
        const keys = (await list(sub)).map((o) => `${prefix}${o.path}`)
        for (let at = 0; at < keys.length; at += 1000) {
          const res = await client.send(
            new DeleteObjectsCommand({
              Bucket: bucket,
              Delete: { Objects: keys.slice(at, at + 1000).map((Key) => ({ Key })), Quiet: true },
            }),
          )
          const failed = res.Errors?.[0]
          if (failed)
            throw new Error(`cannot delete ${failed.Key}: ${failed.Code} ${failed.Message}`)
        }
      }),
    close,
    [Symbol.asyncDispose]: close,
  }
}
