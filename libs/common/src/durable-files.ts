import { open } from 'node:fs/promises'

/** Whether a file system error means the path (or a directory on it) does not exist. */
export const isMissing = (err: unknown): boolean => {
  const code = (err as NodeJS.ErrnoException).code
  return code === 'ENOENT' || code === 'ENOTDIR'
}

/** Makes the entries of `dir` (files created, renamed or removed in it) durable. */
export const fsyncDir = async (dir: string): Promise<void> => {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * Writes `bytes` to a new file at `path` and syncs it: durable content, though the name is durable
 * only once its directory is synced (write to a temporary name, rename, then fsyncDir).
 */
export const writeSynced = async (path: string, bytes: Uint8Array): Promise<void> => {
  const handle = await open(path, 'w')
  try {
    await handle.writeFile(bytes)
    await handle.sync()
  } finally {
    await handle.close()
  }
}
