/**
 * The disaster-recovery drill as an operator runs it (issue 9): real clients typing on 50
 * documents through two server nodes and two workers (child processes); `streambed backup`
 * through the workers; everything stopped, Redis flushed and the storage lost; `streambed restore
 * --inline` into an empty deployment; `streambed verify` passes; server nodes started on it serve
 * every document byte for byte as before. On Postgres with the backup in a directory, restored
 * into a new database; on S3 with the backup under an S3 prefix, restored into another Redis and
 * another S3 prefix (a move).
 */
import { afterAll, describe, expect, it, vi } from 'vitest'
import {
  connectClient,
  expectedEntries,
  missingFrom,
  startTyping,
  type TestClient,
  type Typist,
  startRedisServer,
  uniquePrefix,
  useRedisServer,
} from '@streambed/testing'
import { fastCompaction } from '@streambed/worker-app/testing'
import { spawnNode, type SpawnedProcessNode } from './testing/nodes.js'
import {
  describeRun,
  jsonOf,
  labelledJson,
  runCli,
  sameBytes,
  spawnAll,
  startLosableStorage,
  stateOf,
} from './testing/recovery.js'

const redis = useRedisServer()

const DOCS = Array.from({ length: 50 }, (_, i) => `drill/doc-${i}`)
const workerTiming = { ...fastCompaction, JOBS_LOCK_MS: '2000' }

/** Every process started here, killed when the file ends however its tests ended. */
const started = new Set<SpawnedProcessNode>()
afterAll(() => Promise.all([...started].map((p) => p.crash())))

/** `servers` server nodes and `workers` workers as child processes on one deployment. */
const startDeployment = async (env: Record<string, string>, servers: number, workers: number) => {
  const procs = await spawnAll([
    ...Array.from({ length: servers }, () => () => spawnNode(env)),
    ...Array.from(
      { length: workers },
      () => () => spawnNode({ ...env, ...workerTiming }, { command: 'worker' }),
    ),
  ])
  for (const p of procs) started.add(p)
  return {
    servers: procs.slice(0, servers),
    workers: procs.slice(servers),
    /** SIGTERM to every process; resolves with their exit codes. */
    stop: () => Promise.all(procs.map(async (p) => (await p.stop(), p.proc.exited))),
    crash: () => Promise.all(procs.map((p) => p.crash())),
  }
}

/** A fresh client of `doc` on `node`, synced. */
const join = async (node: SpawnedProcessNode, doc: string): Promise<TestClient> => {
  const client = connectClient(node.url, doc)
  await client.synced(30_000)
  return client
}

interface BackupSummary {
  location: string
  totals: { documents: number; objects: number; tailEntries: number; logEntries: number }
}

/**
 * Postgres: the database is lost and replaced by an empty one; the restore goes into the same
 * (flushed) Redis. S3: the deployment moves, restored into another Redis and another S3 prefix.
 */
const variants = [
  { kind: 'postgres', move: false },
  { kind: 's3', move: true },
] as const

describe.each(variants)('disaster-recovery drill on $kind storage', ({ kind, move }) => {
  it(`backs up through the workers, restores ${move ? 'into another Redis and S3 prefix' : 'into an emptied Redis and a new database'}, serves every document byte for byte`, async () => {
    const storage = await startLosableStorage(kind)
    await using otherRedis = move ? await startRedisServer() : null
    const env = {
      REDIS_URL: redis.url,
      REDIS_PREFIX: uniquePrefix(`drill-${kind}`),
      ...storage.env,
    }
    const first = await startDeployment(env, 2, 2)
    try {
      const [a, b] = first.servers as [SpawnedProcessNode, SpawnedProcessNode]
      // Traffic: a typist per document, alternating nodes; every fifth document has a second
      // typist on the other node.
      const typists = new Map<string, Typist[]>()
      for (const [i, doc] of DOCS.entries()) {
        const nodes = i % 2 === 0 ? [a, b] : [b, a]
        const clients = nodes.slice(0, i % 5 === 0 ? 2 : 1).map((n) => connectClient(n.url, doc))
        typists.set(
          doc,
          clients.map((c, j) => startTyping(c, `${i}.${j}`, 150)),
        )
      }
      const all = [...typists.values()].flat()
      await vi.waitFor(() => expect(all.every((t) => t.typed >= 6)).toBe(true), {
        timeout: 30_000,
        interval: 100,
      })
      for (const t of all) t.stop()
      await vi.waitFor(
        () => {
          for (const group of typists.values()) {
            const expected = expectedEntries(group)
            for (const t of group) expect(missingFrom(t.client, expected)).toEqual([])
          }
        },
        { timeout: 30_000, interval: 200 },
      )

      // What a client joining now receives, per document: the state the restore must give back.
      const before = new Map<string, Uint8Array>()
      for (const [i, doc] of DOCS.entries()) {
        const fresh = await join(i % 2 === 0 ? b : a, doc)
        const expected = expectedEntries(typists.get(doc)!)
        const log = fresh.doc.getArray<string>('log').toArray()
        expect(new Set(log)).toEqual(expected)
        expect(log).toHaveLength(expected.size)
        before.set(doc, stateOf(fresh.doc))
        fresh.destroy()
      }
      for (const t of all) t.client.destroy()

      // The backup runs on the workers: the command names the operation and reports progress.
      const backup = await runCli(['backup', storage.backupDest, '--batch-size', '10'], env)
      expect(backup.code, describeRun(backup)).toBe(0)
      expect(backup.stderr).toMatch(/^backup: operation backup-\S+$/m)
      expect(backup.stderr).toMatch(/^backup: 5\/5 \(100 %\)$/m)
      const summary = labelledJson<BackupSummary>(backup, 'backup complete')
      expect(summary.location).toBe(storage.backupDest)
      expect(summary.totals.documents).toBe(DOCS.length)

      // The disaster: every process stopped, Redis flushed, the storage gone.
      expect(await first.stop()).toEqual([0, 0, 0, 0])
      await redis.admin.flushall()
      expect(await redis.admin.dbsize()).toBe(0)
      const emptied = await storage.lose()
      const lostEnv = move
        ? {
            ...env,
            ...emptied,
            REDIS_URL: otherRedis!.url,
            REDIS_PREFIX: uniquePrefix('moved'),
            S3_PREFIX: 'moved/',
          }
        : { ...env, ...emptied }

      // Redis is empty, so no worker could take an operation: the restore runs in the command.
      const restore = await runCli(['restore', storage.backupDest, '--inline', '--json'], lostEnv)
      const restored = jsonOf<{
        restored: { documents: number; statesWritten: number; tasks: number }
        verified: { ok: boolean; documents: number; failed: number }
      }>(restore)
      expect(restored.restored.documents).toBe(DOCS.length)
      expect(restored.restored.statesWritten).toBeGreaterThan(0)
      expect(restored.verified).toMatchObject({ ok: true, documents: DOCS.length, failed: 0 })

      // Nodes start again on the restored deployment (no worker needed to serve); meanwhile the
      // operator verifies every document once more.
      const [verify, second] = await Promise.all([
        runCli(['verify', '--inline'], lostEnv),
        startDeployment(lostEnv, 2, 0),
      ])
      try {
        expect(verify.code, describeRun(verify)).toBe(0)
        expect(verify.stdout).toBe('verified: no mismatch\n')

        const [c, d] = second.servers as [SpawnedProcessNode, SpawnedProcessNode]
        const differing: string[] = []
        await Promise.all(
          DOCS.map(async (doc, i) => {
            const fresh = await join(i % 2 === 0 ? c : d, doc)
            if (!sameBytes(stateOf(fresh.doc), before.get(doc)!)) differing.push(doc)
            fresh.destroy()
          }),
        )
        expect(differing).toEqual([])

        const inspect = jsonOf<{ documents: { total: number }; nodes: { alive: boolean }[] }>(
          await runCli(['inspect', '--json'], lostEnv),
        )
        expect(inspect.documents.total).toBe(DOCS.length)
        expect(inspect.nodes.filter((n) => n.alive)).toHaveLength(2)
        expect(await second.stop()).toEqual([0, 0])
      } finally {
        await second.crash()
      }
    } finally {
      await first.crash()
      await storage.close()
    }
  }, 240_000)
})
