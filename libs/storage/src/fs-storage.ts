import {
  access,
  constants,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
} from 'node:fs/promises'
import { join } from 'node:path'
import { AppError, sleep } from '@streambed/common'
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
import {
  type DocStorage,
  type LogEntry,
  type StoredDoc,
  compareWatermarks,
  normaliseLog,
} from './storage.js'

/**
 * Local-directory storage: safe for any number of processes on one machine, not for machines
 * sharing a network file system.
 *
 *   <dir>/v1/docs/<escaped>/<sortable watermark>.ydoc   state versions (encodeStateFile)
 *   <dir>/v1/log/<escaped>/<first>_<last>.ylog           update log batches
 *   <dir>/v1/locks/<escaped>.lock                        held during compare-and-set and delete
 *
 * State versions are immutable files named by their watermark (fixed width, so names sort like
 * watermarks), written atomically (temporary file, fsync, rename, fsync the directory). `load`
 * reads the highest. Compare-and-set holds an O_EXCL lock file, checks that the highest version is
 * `expected`, writes the next version, then removes all but the newest two. A lock older than
 * `staleLockMs` (its holder was killed) is broken. Should a live but stalled holder lose its lock
 * that way, two writers may both store a version; the highest — what `load` returns — contains
 * everything the other does (each merged state(expected) with every entry up to its own
 * watermark), so a stored watermark still never goes back (docs/decisions/0007).
 */
export interface FsStorageOptions {
  /** Root directory; created if missing. */
  dir: string
  /** A lock file older than this belongs to a dead process; default 30 s. */
  staleLockMs?: number
}

const isMissing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT'

const unavailable = (what: string, err: unknown) =>
  err instanceof AppError
    ? err
    : new AppError('STORAGE_UNAVAILABLE', `${what}: ${(err as Error).message}`, { cause: err })

const fsyncDir = async (dir: string) => {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * Creates `dir` (a direct child of `parent`) if needed. A new directory's own entry is durable
 * only once its parent is synced: without that, a crash could lose the directory, and with it
 * the first state or log file a document ever got.
 */
const ensureDir = async (dir: string, parent: string) => {
  if ((await mkdir(dir, { recursive: true })) !== undefined) await fsyncDir(parent)
}

/** Temporary file names: unique among the processes of one machine (fs storage is one machine's). */
let tmpCounter = 0

/** Writes `bytes` to `path` so that readers see the old or the new file, never a partial one. */
const writeAtomically = async (path: string, dir: string, bytes: Uint8Array): Promise<void> => {
  const tmp = `${path}.${process.pid}-${++tmpCounter}.tmp`
  try {
    const handle = await open(tmp, 'w')
    try {
      await handle.writeFile(bytes)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(tmp, path)
    await fsyncDir(dir)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

export const createFsStorage = async (opts: FsStorageOptions): Promise<DocStorage> => {
  const root = join(opts.dir, 'v1')
  const docsDir = join(root, 'docs')
  const logDir = join(root, 'log')
  const locksDir = join(root, 'locks')
  const staleLockMs = opts.staleLockMs ?? 30_000
  try {
    await mkdir(opts.dir, { recursive: true })
    await ensureDir(root, opts.dir)
    for (const d of [docsDir, logDir, locksDir]) await ensureDir(d, root)
  } catch (err) {
    throw new AppError(
      'CONFIG',
      `STORAGE_DIR ${opts.dir} is not a writable directory (${(err as Error).message})`,
      {
        cause: err,
      },
    )
  }
  const docDir = (doc: string) => join(docsDir, escapeDocName(doc))
  const versionPath = (doc: string, watermark: string) =>
    join(docDir(doc), `${sortableWatermark(watermark)}.ydoc`)
  const docLogDir = (doc: string) => join(logDir, escapeDocName(doc))

  /** The document's state versions, highest watermark first. */
  const versions = async (doc: string): Promise<string[]> => {
    try {
      return (await readdir(docDir(doc)))
        .filter((n) => n.endsWith('.ydoc'))
        .sort()
        .reverse()
    } catch (err) {
      if (isMissing(err)) return []
      throw err
    }
  }

  /** Runs `fn` holding the document's lock file. */
  const withLock = async <T>(doc: string, fn: () => Promise<T>): Promise<T> => {
    const lockPath = join(locksDir, `${escapeDocName(doc)}.lock`)
    for (let attempt = 0; ; attempt++) {
      try {
        const handle = await open(lockPath, 'wx')
        await handle.writeFile(`${process.pid} ${Date.now()}\n`)
        await handle.close()
        break
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
        const info = await stat(lockPath).catch(() => null)
        if (info && Date.now() - info.mtimeMs > staleLockMs) {
          await unlink(lockPath).catch(() => undefined)
          continue
        }
        await sleep(Math.min(2 + attempt, 20))
      }
    }
    try {
      return await fn()
    } finally {
      await unlink(lockPath).catch(() => undefined)
    }
  }

  const readState = async (doc: string): Promise<StoredDoc | null> => {
    for (let attempt = 0; ; attempt++) {
      const [newest] = await versions(doc)
      if (!newest) return null
      const path = join(docDir(doc), newest)
      try {
        return decodeStateFile(path, await readFile(path)).stored
      } catch (err) {
        // Collected by a writer between listing and reading: list again.
        if (!isMissing(err) || attempt >= 5) throw err
      }
    }
  }

  const storage: DocStorage = {
    kind: 'fs',
    load: async (doc) => {
      try {
        return await readState(doc)
      } catch (err) {
        throw unavailable(`cannot read ${doc}`, err)
      }
    },
    watermark: async (doc) => {
      try {
        const [newest] = await versions(doc)
        return newest ? watermarkFromSortable(newest.slice(0, -'.ydoc'.length)) : null
      } catch (err) {
        throw unavailable(`cannot read ${doc}`, err)
      }
    },
    compareAndSet: async (doc, expected, next) => {
      try {
        return await withLock(doc, async () => {
          const [newest, ...older] = await versions(doc)
          const current = newest ? watermarkFromSortable(newest.slice(0, -'.ydoc'.length)) : null
          if (current !== expected) return false
          if (expected !== null && compareWatermarks(next.watermark, expected) < 0) return false
          await ensureDir(docDir(doc), docsDir)
          await writeAtomically(
            versionPath(doc, next.watermark),
            docDir(doc),
            encodeStateFile(doc, next),
          )
          // Keep the previous version too: a concurrent load may be about to read it.
          for (const old of older) await rm(join(docDir(doc), old), { force: true })
          return true
        })
      } catch (err) {
        throw unavailable(`cannot store ${doc}`, err)
      }
    },
    appendLog: async (doc, entries) => {
      if (entries.length === 0) return
      try {
        const dir = docLogDir(doc)
        await ensureDir(dir, logDir)
        await writeAtomically(
          join(dir, `${logBatchName(entries)}.ylog`),
          dir,
          encodeLogBatch(doc, entries),
        )
      } catch (err) {
        throw unavailable(`cannot archive ${doc}`, err)
      }
    },
    readLog: async (doc, readOpts = {}) => {
      try {
        const dir = docLogDir(doc)
        let names: string[]
        try {
          names = (await readdir(dir)).filter((n) => n.endsWith('.ylog'))
        } catch (err) {
          if (isMissing(err)) return []
          throw err
        }
        const all: LogEntry[] = []
        for (const name of names) {
          const path = join(dir, name)
          all.push(...decodeLogBatch(path, await readFile(path)))
        }
        return normaliseLog(all, readOpts.after)
      } catch (err) {
        throw unavailable(`cannot read the update log of ${doc}`, err)
      }
    },
    delete: async (doc) => {
      try {
        await withLock(doc, async () => {
          await rm(docDir(doc), { recursive: true, force: true })
          await rm(docLogDir(doc), { recursive: true, force: true })
          await fsyncDir(docsDir)
        })
      } catch (err) {
        throw unavailable(`cannot delete ${doc}`, err)
      }
    },
    list: async ({ after, limit = 1000 } = {}) => {
      try {
        const names: string[] = []
        for (const escaped of await readdir(docsDir)) {
          const files = (await readdir(join(docsDir, escaped)).catch(() => [])).filter((f) =>
            f.endsWith('.ydoc'),
          )
          const newest = files.sort().pop()
          if (!newest) continue
          // A hashed long name keeps the document name inside the state file.
          names.push(
            unescapeDocName(escaped) ??
              decodeStateFile(newest, await readFile(join(docsDir, escaped, newest))).doc,
          )
        }
        return names
          .sort()
          .filter((n) => after === undefined || n > after)
          .slice(0, limit)
      } catch (err) {
        throw unavailable('cannot list documents', err)
      }
    },
    ping: async () => {
      try {
        await access(docsDir, constants.W_OK)
      } catch (err) {
        throw unavailable(`STORAGE_DIR ${opts.dir} is not writable`, err)
      }
    },
    close: async () => {},
  }
  return storage
}
