/**
 * A worker SIGKILLed in the middle of a backup (issue 9): the batches it held are taken over by
 * the other worker once their lock (JOBS_LOCK_MS) expires, the operation completes, and
 * `streambed verify --backup` finds every object as its manifest says.
 */
import * as Y from 'yjs'
import { expect, it, vi } from 'vitest'
import { createLogger } from '@streambed/common'
import { startTestNode } from '@streambed/server/testing'
import { openStorage } from '@streambed/storage'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { parseWorkerConfig } from '@streambed/worker-app'
import { fastCompaction } from '@streambed/worker-app/testing'
import { spawnNode, type SpawnedProcessNode } from './testing/nodes.js'
import {
  describeRun,
  jsonOf,
  labelledJson,
  runCli,
  spawnAll,
  startCli,
  startLosableStorage,
} from './testing/recovery.js'

const redis = useRedisServer()

/** Documents, one batch each: enough that a worker is still busy when it is killed. */
const N = 240
const DOCS = Array.from({ length: N }, (_, i) => `bulk/doc-${i}`)

const update = (text: string): Uint8Array => {
  const doc = new Y.Doc()
  doc.getArray<string>('log').push([text])
  return Y.encodeStateAsUpdate(doc)
}

it('completes a backup on the other worker when one is SIGKILLed mid-way; verify --backup passes', async () => {
  const backend = await startLosableStorage('fs')
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix('bk-crash'), ...backend.env }
  const storage = await openStorage(parseWorkerConfig(env), createLogger({ level: 'silent' }))
  const workerEnv = { ...env, ...fastCompaction, JOBS_LOCK_MS: '2000' }
  const [doomed, survivor] = (await spawnAll([
    () => spawnNode(workerEnv, { command: 'worker' }),
    () => spawnNode(workerEnv, { command: 'worker' }),
  ])) as [SpawnedProcessNode, SpawnedProcessNode]
  try {
    {
      await using node = await startTestNode({ ...env, HTTP_MAX_REQUESTS_PER_SECOND: '100000' })
      for (let i = 0; i < DOCS.length; i += 20) {
        await Promise.all(
          DOCS.slice(i, i + 20).map(async (doc) => {
            const res = await fetch(`${node.httpUrl}/docs/${doc}`, {
              method: 'POST',
              body: update(doc),
            })
            expect(res.status).toBe(200)
          }),
        )
      }
    }
    // Compacted: each document has a stored state and an update log to back up.
    await vi.waitFor(async () => expect(await storage.list({ limit: 1000 })).toHaveLength(N), {
      timeout: 60_000,
      interval: 250,
    })

    const dest = backend.backupDest
    const backup = startCli(['backup', dest, '--batch-size', '1'], env)
    const operation = /^backup: operation (\S+)$/.exec(
      await backup.waitForStderr(/^backup: operation /),
    )![1]!
    // Some batches done, most still to do: the doomed worker holds batches of its own.
    await backup.waitForStderr(new RegExp(`^backup: [1-9]\\d*/${N} `))
    await doomed.crash()
    const run = await backup.result
    expect(run.code, describeRun(run)).toBe(0)
    const summary = labelledJson<{ location: string; totals: { documents: number } }>(
      run,
      'backup complete',
    )
    expect(summary).toMatchObject({ location: dest, totals: { documents: DOCS.length } })
    expect(run.stderr).toContain(`backup: ${N}/${N} (100 %)\n`)

    // Batches the killed worker held stalled and ran again on the survivor.
    const batchKeys = await redis.admin.keys(`${env.REDIS_PREFIX}:v1:{jobs}:ops:${operation}-b*`)
    expect(batchKeys.filter((k) => /-b\d+$/.test(k))).toHaveLength(N)
    const stalled = await Promise.all(batchKeys.map((k) => redis.admin.hget(k, 'stc')))
    expect(stalled.filter((s) => Number(s) >= 1).length).toBeGreaterThan(0)

    const verified = jsonOf<{ ok: boolean; subject: string; documents: number; failed: number }>(
      await runCli(['verify', '--backup', dest, '--json'], env),
    )
    expect(verified).toEqual(
      expect.objectContaining({ ok: true, subject: dest, documents: DOCS.length, failed: 0 }),
    )
  } finally {
    await Promise.all([doomed.crash(), survivor.crash()])
    await storage.close()
    await backend.close()
  }
}, 180_000)
