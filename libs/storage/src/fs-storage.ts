import {
  type FileHandle,
  access,
  constants,
  mkdir,
  open,
  readdir,
  rename,
  rm,
  stat,
} from 'node:fs/promises'
import { dirname, join, sep } from 'node:path'
import {
  AppError,
  fsyncDir,
  guarded,
  isMissing,
  type Logger,
  silentLogger,
  writeSynced,
} from '@streambed/common'
import {
  BATCH_CONCURRENCY,
  type BlobPut,
  type Blobs,
  isLogName,
  isStateName,
  mapLimit,
} from './blobs.js'
import { createLockFiles } from './lock-files.js'
import type { DocStorage } from './storage.js'
import { createVersionedStorage } from './versioned-objects.js'

/**
 * Local-directory storage: safe for any number of processes on one machine, not for machines
 * sharing a network file system. The versioned-object scheme of versioned-objects.ts, in files:
 *
 *   <dir>/v1/docs/<escaped>/<sortable watermark>.ydoc      state versions (encodeStateFile)
 *   <dir>/v1/log/<escaped>/<first>_<last>.ylog              update log batches and segments
 *   <dir>/v1/checkpoints/<escaped>/<sortable upTo>.ydoc     checkpoints (encodeStateFile)
 *   <dir>/v1/locks/<escaped>.lock                           held during compare-and-set and delete
 *   <dir>/v1/locks/spare/<pid>-…                            what lock files link to (lock-files.ts)
 *
 * Files are written atomically (temporary file, fsync, rename, fsync the directory, and fsync the
 * parent of a directory just created); files written together (compareAndSetMany, appendLogMany)
 * are synced together, each directory once. Compare-and-set and delete hold a lock file (made by
 * an exclusive hard link, lock-files.ts), so of writers racing from one watermark exactly one wins.
 * A lock older than `staleLockMs` (its holder was killed) is broken. Should a live but stalled
 * holder lose its lock that way, two writers may both store a version; the highest — what `load`
 * returns — contains everything the other does, so a stored watermark still never goes back
 * (docs/decisions/0007). A rename replaces an existing file: puts do not honour if-absent, the lock
 * does that job.
 *
 * Deleting a file does not sync its directory: a crash may bring back an old state version, a log
 * batch already packed into a segment (its entries are read once) or one dropped by dropLog (the
 * next dropLog removes it again). The update log and checkpoints take no lock (object-log.ts says
 * why racing writers are safe without one). A log directory emptied by dropLog stays: removing it
 * would race an appendLog that has just created it. Deleting old state versions is best effort: a
 * failure is logged as a warning and the next write deletes them.
 */
export interface FsStorageOptions {
  /** Root directory; created if missing. */
  dir: string
  /** A lock file older than this belongs to a dead process; default 30 s. */
  staleLockMs?: number
  /** Receives failures of best-effort clean-up (old state versions); default silent. */
  logger?: Logger
}

/** Creates `dir` (a direct child of `parent`) if needed, durably (see writeAllAtomically). */
const ensureDir = async (dir: string, parent: string) => {
  if ((await mkdir(dir, { recursive: true })) !== undefined) await fsyncDir(parent)
}

/** Temporary file names: unique among the processes of one machine (fs storage is one machine's). */
let tmpCounter = 0

/**
 * Writes each `bytes` to its `key` so that readers see the old or the new file, never a partial
 * one, and durably: every file is written and synced, then renamed, then each directory holding
 * one is synced once (a group commit: the syncs of many files run together). A directory created
 * for a file is durable only once its parent is synced too: without that, a crash could lose the
 * directory, and with it the first state or log file a document ever got.
 */
const writeAllAtomically = async (puts: readonly BlobPut[]): Promise<void> => {
  const dirs = [...new Set(puts.map((p) => dirname(p.key)))]
  const created = await mapLimit(dirs, BATCH_CONCURRENCY, (d) => mkdir(d, { recursive: true }))
  const newParents = new Set(dirs.filter((_, i) => created[i] !== undefined).map(dirname))
  await mapLimit([...newParents], BATCH_CONCURRENCY, fsyncDir)
  const files = puts.map((p) => ({ ...p, tmp: `${p.key}.${process.pid}-${++tmpCounter}.tmp` }))
  try {
    await mapLimit(files, BATCH_CONCURRENCY, ({ tmp, bytes }) => writeSynced(tmp, bytes))
    await mapLimit(files, BATCH_CONCURRENCY, ({ tmp, key }) => rename(tmp, key))
  } catch (err) {
    await Promise.all(files.map(({ tmp }) => rm(tmp, { force: true })))
    throw err
  }
  await mapLimit(dirs, BATCH_CONCURRENCY, fsyncDir)
}

/** The file's first `bytes` bytes (fewer if it is shorter). */
const readHead = async (handle: FileHandle, bytes: number): Promise<Uint8Array> => {
  const head = Buffer.alloc(bytes)
  let got = 0
  while (got < bytes) {
    const { bytesRead } = await handle.read(head, got, bytes - got, got)
    if (bytesRead === 0) break
    got += bytesRead
  }
  return head.subarray(0, got)
}

export const createFsStorage = async (opts: FsStorageOptions): Promise<DocStorage> => {
  const root = join(opts.dir, 'v1')
  const docsDir = join(root, 'docs')
  const logDir = join(root, 'log')
  const checkpointsDir = join(root, 'checkpoints')
  const locksDir = join(root, 'locks')
  const staleLockMs = opts.staleLockMs ?? 30_000
  try {
    await mkdir(opts.dir, { recursive: true })
    await ensureDir(root, opts.dir)
    for (const d of [docsDir, logDir, checkpointsDir, locksDir]) await ensureDir(d, root)
  } catch (err) {
    throw new AppError(
      'CONFIG',
      `STORAGE_DIR ${opts.dir} is not a writable directory (${(err as Error).message})`,
      { cause: err },
    )
  }

  const locks = await createLockFiles(locksDir, staleLockMs)

  // Keys are file paths; a folder is a directory path ending in the separator.
  const blobs: Blobs = {
    folders: (escaped) => {
      const state = `${join(docsDir, escaped)}${sep}`
      const log = `${join(logDir, escaped)}${sep}`
      const checkpoints = `${join(checkpointsDir, escaped)}${sep}`
      return { state, log, checkpoints, all: [state, log, checkpoints] }
    },
    list: async (folder) => {
      try {
        return await readdir(folder)
      } catch (err) {
        if (isMissing(err)) return []
        throw err
      }
    },
    listSized: async (folder) => {
      const sizes = new Map<string, number>()
      for (const name of await blobs.list(folder)) {
        const info = await stat(join(folder, name)).catch((err: unknown) => {
          // Deleted since the listing: left out, as if listed a moment later.
          if (isMissing(err)) return null
          throw err
        })
        if (info !== null) sizes.set(name, info.size)
      }
      return sizes
    },
    documents: async (kind) => {
      const found = new Map<string, string>()
      /** For every document folder under `dir`, the key of the object `pick` chooses. */
      const scan = async (
        dir: string,
        folderOf: (escaped: string) => string,
        pick: (names: string[]) => string | undefined,
      ) => {
        for (const escaped of await readdir(dir)) {
          if (found.has(escaped)) continue
          const folder = folderOf(escaped)
          const name = pick(await blobs.list(folder))
          if (name !== undefined) found.set(escaped, `${folder}${name}`)
        }
      }
      if (kind === 'state') {
        const newest = (names: string[]) => names.filter(isStateName).sort().at(-1)
        await scan(docsDir, (e) => blobs.folders(e).state, newest)
      } else {
        await scan(
          checkpointsDir,
          (e) => blobs.folders(e).checkpoints,
          (n) => n.find(isStateName),
        )
        await scan(
          logDir,
          (e) => blobs.folders(e).log,
          (n) => n.find(isLogName),
        )
      }
      return found
    },
    get: async (key, rangeBytes) => {
      let handle: FileHandle
      try {
        handle = await open(key, 'r')
      } catch (err) {
        if (isMissing(err)) return null
        throw err
      }
      try {
        return rangeBytes === undefined
          ? await handle.readFile()
          : await readHead(handle, rangeBytes)
      } finally {
        await handle.close()
      }
    },
    put: async (key, bytes, { ifAbsent }) => {
      await writeAllAtomically([{ key, bytes, ifAbsent }])
      return true
    },
    putMany: async (puts) => {
      await writeAllAtomically(puts)
      return puts.map(() => true)
    },
    delete: async (keys) => {
      for (const key of keys) await rm(key, { force: true })
    },
    deleteAll: async (folder) => {
      // A worker may be writing a file into it meanwhile (a log batch's temporary file): rm then
      // fails with ENOTEMPTY; Node retries it (linear backoff) on that and EBUSY.
      await rm(folder, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 })
      await fsyncDir(dirname(folder))
    },
    lock: (escaped, lockOpts) => locks.lock(escaped, lockOpts),
  }

  return createVersionedStorage(blobs, {
    kind: 'fs',
    logger: opts.logger ?? silentLogger(),
    ping: () =>
      guarded('STORAGE_UNAVAILABLE', `STORAGE_DIR ${opts.dir} is not writable`, () =>
        access(docsDir, constants.W_OK),
      ),
    close: () => locks.close(),
  })
}
