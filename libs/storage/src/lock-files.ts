import { link, mkdir, open, readdir, stat, unlink, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { isMissing, sleep } from '@streambed/common'
import type { Unlock } from './blobs.js'

/**
 * Per-document lock files (fs storage's compare-and-set and delete): `<dir>/<escaped>.lock`
 * exists while a process holds the document, and one older than `staleMs` (by its mtime) belongs
 * to a dead process and is broken.
 *
 * A lock is a hard link to one of this process' spare files (`<dir>/spare/`), stamped with the time
 * it was taken; releasing it unlinks the link and keeps the spare for the next lock. Creating and
 * deleting a file for every lock instead makes ext4 without a journal (this project's benchmark
 * machine) step over every inode freed in the last minutes on each file it creates, which took a
 * third of a compacting worker's time (S6 profile; docs/decisions/0013). To every reader — older
 * releases included, which create a file of that name exclusively — a linked lock is an ordinary
 * file of that name whose mtime is the time it was taken.
 */
export interface LockFiles {
  /** Takes the lock (waiting for it, or null at once with `wait: false` when another holds it). */
  lock(escaped: string, opts: { wait: boolean }): Promise<Unlock | null>
  /** Removes this process' spare files. */
  close(): Promise<void>
}

let processCounter = 0

export const createLockFiles = async (dir: string, staleMs: number): Promise<LockFiles> => {
  const spareDir = join(dir, 'spare')
  await mkdir(spareDir, { recursive: true })
  // Spares of dead processes: they hold nothing (a link left by them is a stale lock, broken by
  // its name). One of a live but idle process removed here is made again when it next locks.
  for (const name of await readdir(spareDir)) {
    const path = join(spareDir, name)
    const info = await stat(path).catch(() => null)
    if (info && Date.now() - info.mtimeMs > staleMs) await unlink(path).catch(() => undefined)
  }
  const prefix = `${process.pid}-${Date.now().toString(36)}-${++processCounter}`
  const free: string[] = []
  let made = 0

  const spare = async (): Promise<string> => {
    const reused = free.pop()
    if (reused !== undefined) return reused
    const path = join(spareDir, `${prefix}-${++made}`)
    await (await open(path, 'wx')).close()
    return path
  }

  const lock: LockFiles['lock'] = async (escaped, { wait }) => {
    const lockPath = join(dir, `${escaped}.lock`)
    let mine = await spare()
    let remade = false
    for (let attempt = 0; ; attempt++) {
      try {
        const now = new Date()
        await utimes(mine, now, now)
        await link(mine, lockPath)
        const held = mine
        return async () => {
          try {
            await unlink(lockPath)
          } catch (err) {
            // Not ours any more (broken as stale): the spare is linked nowhere else either way.
            if (!isMissing(err)) return
          }
          free.push(held)
        }
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'ENOENT' && !remade) {
          // Our spare was removed (taken for a dead process' by one starting): make another.
          remade = true
          mine = await spare()
          continue
        }
        if (code !== 'EEXIST') {
          free.push(mine)
          throw err
        }
        const info = await stat(lockPath).catch(() => null)
        if (info && Date.now() - info.mtimeMs > staleMs) {
          await unlink(lockPath).catch(() => undefined)
          continue
        }
        if (!wait) {
          free.push(mine)
          return null
        }
        await sleep(Math.min(2 + attempt, 20))
      }
    }
  }

  return {
    lock,
    close: async () => {
      await Promise.all(free.splice(0).map((path) => unlink(path).catch(() => undefined)))
    },
  }
}
