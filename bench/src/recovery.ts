/**
 * RECOVERY (issue 9): how long `streambed backup` and `streambed restore` take for 1 000 and
 * 10 000 small documents with 1 and 2 worker processes doing the work (BullMQ batches), and how
 * long `streambed restore-doc --at` takes for a document with 100 000 logged updates and no
 * checkpoint (the worst case: the whole log before --at is replayed).
 *
 * Each document is a stored state (a short paragraph) plus one archived log entry, written to fs
 * storage with the storage library; the CLI runs from the compiled build as an operator runs it.
 * A restore goes into a fresh Redis + storage with its own workers, and verifies at its end.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { createFsStorage } from '@streambed/storage'
import { startCluster } from './cluster.js'
import type { Scenario } from './framework.js'
import { fmt, repoRoot, table, type Row } from './stats.js'

const cliBin = join(repoRoot, 'apps/cli/bin/streambed.js')

/** `streambed <args>` from the build with `env`; resolves with the wall time once it exited 0. */
const cli = (args: readonly string[], env: Record<string, string>): Promise<number> =>
  new Promise((resolve, reject) => {
    const started = performance.now()
    execFile(
      process.execPath,
      [cliBin, ...args],
      {
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, _stdout, stderr) => {
        if (err) reject(new Error(`streambed ${args.join(' ')} failed: ${err.message}\n${stderr}`))
        else resolve(performance.now() - started)
      },
    )
  })

/** A small document (one paragraph) as a stored state and the update that made it. */
const smallDocument = (i: number): Uint8Array => {
  const doc = new Y.Doc()
  doc.getText('t').insert(0, `Document ${i}: a short paragraph of notes, as most documents are.`)
  return Y.encodeStateAsUpdate(doc)
}

/** Stores `count` small documents, each with one log entry, `parallel` at a time. */
const populate = async (storageDir: string, count: number): Promise<void> => {
  const storage = await createFsStorage({ dir: storageDir })
  const base = Date.now() - 3_600_000
  try {
    for (let i = 0; i < count; i += 100) {
      await Promise.all(
        Array.from({ length: Math.min(100, count - i) }, async (_, k) => {
          const n = i + k
          const state = smallDocument(n)
          const id = `${base + n}-0`
          await storage.appendLog(`doc-${n}`, [{ id, update: state }])
          await storage.compareAndSet(`doc-${n}`, null, { state, watermark: id })
        }),
      )
    }
  } finally {
    await storage.close()
  }
}

/** A document typed one character per update: `n` log entries a millisecond apart. */
const populateLongLog = async (storageDir: string, doc: string, n: number) => {
  const storage = await createFsStorage({ dir: storageDir })
  const base = Date.now() - 2 * n
  const writer = new Y.Doc()
  const updates: Uint8Array[] = []
  writer.on('update', (u: Uint8Array) => updates.push(u))
  const text = writer.getText('t')
  for (let i = 0; i < n; i++) text.insert(text.length, 'abcdefghij'[i % 10] as string)
  try {
    for (let i = 0; i < n; i += 1000) {
      const entries = updates.slice(i, i + 1000).map((update, k) => ({
        id: `${base + 2 * (i + k)}-0`,
        update,
      }))
      await storage.appendLog(doc, entries)
    }
    const last = `${base + 2 * (n - 1)}-0`
    await storage.compareAndSet(doc, null, {
      state: Y.encodeStateAsUpdate(writer),
      watermark: last,
    })
    return { midMs: base + n }
  } finally {
    await storage.close()
  }
}

const scenario: Scenario = {
  name: 'recovery',
  title: 'Backup, restore and restore-doc times',
  run: async (ctx) => {
    const rows: Row[] = []
    for (const count of ctx.quick ? [200] : [1000, 10_000]) {
      for (const workers of [1, 2]) {
        ctx.log(`recovery: ${count} documents, ${workers} worker(s)`)
        const backupDir = await mkdtemp(join(tmpdir(), 'streambed-bench-backup-'))
        try {
          await using source = await startCluster({ nodes: 0, workers })
          await populate(source.storageDir, count)
          const backupMs = await cli(['backup', backupDir, '--json'], source.env)
          await using target = await startCluster({ nodes: 0, workers })
          const restoreMs = await cli(['restore', backupDir, '--json'], target.env)
          rows.push({
            documents: count,
            workers,
            'backup s': fmt(backupMs / 1000, 1),
            'backup docs/s': fmt(count / (backupMs / 1000), 0),
            'restore + verify s': fmt(restoreMs / 1000, 1),
            'restore docs/s': fmt(count / (restoreMs / 1000), 0),
          })
        } finally {
          await rm(backupDir, { recursive: true, force: true })
        }
      }
    }

    const logged = ctx.quick ? 10_000 : 100_000
    ctx.log(`recovery: restore-doc --at over ${logged} logged updates`)
    await using history = await startCluster({ nodes: 0 })
    const { midMs } = await populateLongLog(history.storageDir, 'long', logged)
    const out = join(history.storageDir, 'past.bin')
    const atMs: number[] = []
    for (let r = 0; r < 3; r++)
      atMs.push(
        await cli(
          ['restore-doc', 'long', '--at', String(midMs), '--out', out, '--json'],
          history.env,
        ),
      )
    const doc = table([
      {
        'document log': `${logged} one-character updates, no checkpoint`,
        '--at': 'halfway',
        'restore-doc --at --out, s (3 runs)': atMs.map((ms) => fmt(ms / 1000, 2)).join(' / '),
      },
    ])
    return `${table(rows)}\nEach document: a stored state of one paragraph and one log entry (fs storage). Backup and restore run as BullMQ jobs on the workers (the CLI follows them); times are the CLI's wall time, process start included; restore includes its verification.\n\n${doc}\nrestore-doc runs in the CLI process: storage load, then every logged update up to --at applied to a Y.Doc (no checkpoint, the worst case), written to a file.\n`
  },
}
export default scenario
