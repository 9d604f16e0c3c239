/**
 * Point in time (issue 9): a document edited in three timed phases by clients on two nodes;
 * `streambed history` lists them; `streambed restore-doc --at <between phase 2 and 3>` gives the
 * live document exactly phase 2's content as a forward update (connected clients converge without
 * reloading); `--out` writes that version to a file and changes nothing; phase 3 stays in the
 * history (`streambed export --at`), and `POST /docs/<name>/restore` brings it back. And a stored
 * state that no longer decodes: `verify` names it, the last good version comes out of the history.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as Y from 'yjs'
import { expect, it, vi } from 'vitest'
import { createLogger, idTimeMs } from '@streambed/common'
import { docToJSON, formatTime } from '@streambed/recovery'
import { startTestNode } from '@streambed/server/testing'
import { decodeStateFile, encodeStateFile, openStorage } from '@streambed/storage'
import { connectClient, type TestClient, uniquePrefix, useRedisServer } from '@streambed/testing'
import { parseWorkerConfig } from '@streambed/worker-app'
import { startTestWorker } from '@streambed/worker-app/testing'
import { closeCodes, describeRun, jsonOf, runCli, startLosableStorage } from './testing/recovery.js'

const redis = useRedisServer()

const jsonOfDoc = (doc: Y.Doc) => docToJSON(Y.encodeStateAsUpdate(doc))

/** Waits until the clock has moved past the last edit, takes a time, and moves past it too. */
const boundary = async (): Promise<number> => {
  const start = Date.now()
  await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(start + 20))
  const at = Date.now()
  await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(at + 20))
  return at
}

interface Version {
  at: number
  upTo: string
  entries?: number
  checkpoint?: true
}

it('lists a document’s versions, restores the middle one on the live document, keeps the later one in the history', async () => {
  const backend = await startLosableStorage('fs')
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix('pit'), ...backend.env }
  try {
    await using a = await startTestNode(env)
    await using b = await startTestNode(env)
    // A worker compacts as the phases go: history comes from the update log and the stream.
    await using _worker = await startTestWorker(env)
    const doc = 'team/plan'
    const alice = connectClient(a.url, doc)
    const bob = connectClient(b.url, doc)
    await Promise.all([alice.synced(), bob.synced()])
    const converged = () =>
      vi.waitFor(() => expect(jsonOfDoc(bob.doc)).toEqual(jsonOfDoc(alice.doc)))
    const text = (c: TestClient) => c.doc.getText('text')
    const meta = (c: TestClient) => c.doc.getMap('meta')

    const start = await boundary()
    text(alice).insert(0, 'Plan: ship v1.')
    meta(bob).set('owner', 'bob')
    await converged()
    const afterPhase1 = await boundary()

    text(alice).insert(text(alice).length, ' Then v2.')
    meta(bob).set('status', 'draft')
    await converged()
    const phase2 = jsonOfDoc(alice.doc)
    const afterPhase2 = await boundary()

    // Phase 3, the edit to undo: the text replaced, the map changed.
    text(bob).delete(0, text(bob).length)
    text(bob).insert(0, 'oops')
    meta(alice).delete('owner')
    meta(alice).set('status', 'gone')
    await converged()
    const phase3 = jsonOfDoc(alice.doc)
    const afterPhase3 = await boundary()
    expect(phase3).not.toEqual(phase2)

    const history = jsonOf<{ versions: Version[]; omitted: number }>(
      await runCli(['history', doc, '--bucket', '10ms', '--json'], env),
    )
    const windows = [
      [start, afterPhase1],
      [afterPhase1, afterPhase2],
      [afterPhase2, afterPhase3],
    ] as const
    const phaseOf = (v: Version) => windows.findIndex(([from, to]) => v.at > from && v.at < to)
    expect(history.omitted).toBe(0)
    expect(history.versions.map(phaseOf)).not.toContain(-1)
    expect(new Set(history.versions.map(phaseOf))).toEqual(new Set([0, 1, 2]))

    const closes = [alice, bob].map(closeCodes)
    const readApi = async () => {
      const res = await fetch(`${a.httpUrl}/docs/${doc}`)
      return { upTo: res.headers.get('x-streambed-up-to'), body: await res.arrayBuffer() }
    }
    const beforeOut = await readApi()

    // --out: the version to a file, nothing appended.
    const at = formatTime(afterPhase2)
    const file = join(backend.backupDest, '..', 'plan-at-phase2.ydoc')
    const out = jsonOf<{ out: string; exact: boolean; asOf: number }>(
      await runCli(['restore-doc', doc, '--at', at, '--out', file, '--json'], env),
    )
    expect(out).toMatchObject({ out: file, exact: true, asOf: afterPhase2 })
    expect(docToJSON(new Uint8Array(await readFile(file)))).toEqual(phase2)
    const afterOut = await readApi()
    expect(afterOut.upTo).toBe(beforeOut.upTo)
    expect(Buffer.from(afterOut.body).equals(Buffer.from(beforeOut.body))).toBe(true)
    expect(jsonOfDoc(alice.doc)).toEqual(phase3)

    // The restore: a forward update through the write path; connected clients converge.
    const restore = await runCli(['restore-doc', doc, '--at', at], env)
    expect(restore.code, describeRun(restore)).toBe(0)
    expect(restore.stdout).toMatch(new RegExp(`^restored team/plan to ${at} as \\d+-\\d+\\n$`))
    await vi.waitFor(() => {
      expect(jsonOfDoc(alice.doc)).toEqual(phase2)
      expect(jsonOfDoc(bob.doc)).toEqual(phase2)
    })
    expect(closes).toEqual([[], []])
    const fresh = connectClient(b.url, doc)
    await fresh.synced()
    expect(jsonOfDoc(fresh.doc)).toEqual(phase2)
    // Restoring the same version again appends nothing.
    const again = await runCli(['restore-doc', doc, '--at', at], env)
    expect(again.stdout).toBe(`${doc} already shows its version of ${at}\n`)

    // Phase 3 is still in the history, and the HTTP API can bring it back.
    const late = formatTime(afterPhase3)
    const exported = await runCli(['export', doc, '--at', late, '--format', 'json'], env)
    expect(exported.code, describeRun(exported)).toBe(0)
    expect(JSON.parse(exported.stdout)).toEqual(phase3)
    const undo = await fetch(`${a.httpUrl}/docs/${doc}/restore`, {
      method: 'POST',
      body: JSON.stringify({ at: late }),
    })
    expect(undo.status).toBe(200)
    expect(await undo.json()).toMatchObject({ appended: true, asOf: late, exact: true })
    await vi.waitFor(() => {
      for (const c of [alice, bob, fresh]) expect(jsonOfDoc(c.doc)).toEqual(phase3)
    })
    expect(closes).toEqual([[], []])
    for (const c of [alice, bob, fresh]) c.destroy()
  } finally {
    await backend.close()
  }
}, 120_000)

it('names a document whose stored state does not decode; its last good version comes out of the history', async () => {
  const backend = await startLosableStorage('fs')
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix('corrupt'), ...backend.env }
  const storage = await openStorage(parseWorkerConfig(env), createLogger({ level: 'silent' }))
  try {
    await using node = await startTestNode(env)
    await using _worker = await startTestWorker(env)
    // Three edits by one writer, each in a later millisecond than the one before.
    const writer = new Y.Doc()
    const ids: string[] = []
    for (const word of ['alpha ', 'beta ', 'gamma ']) {
      const sv = Y.encodeStateVector(writer)
      writer.getText('text').insert(writer.getText('text').length, word)
      const res = await fetch(`${node.httpUrl}/docs/ledger`, {
        method: 'POST',
        body: Y.encodeStateAsUpdate(writer, sv),
      })
      ids.push(((await res.json()) as { id: string }).id)
      await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(idTimeMs(ids.at(-1)!) + 2))
    }
    await vi.waitFor(async () => expect(await storage.watermark('ledger')).toBe(ids[2]), {
      timeout: 20_000,
      interval: 100,
    })

    // The damage: the newest stored version's Yjs bytes no longer decode.
    const folder = join(backend.env.STORAGE_DIR!, 'v1', 'docs', 'ledger')
    const file = join(folder, (await readdir(folder)).sort().at(-1)!)
    const { doc, stored } = decodeStateFile(file, new Uint8Array(await readFile(file)))
    const state = Uint8Array.from(stored.state)
    state.set([0xff, 0xff, 0x7f], 1)
    expect(() => Y.applyUpdate(new Y.Doc(), state)).toThrow()
    await writeFile(file, encodeStateFile(doc, { ...stored, state }))

    const verify = await runCli(['verify', 'ledger', '--inline', '--json'], env)
    expect(verify.code, describeRun(verify)).toBe(65)
    expect(JSON.parse(verify.stdout)).toMatchObject({
      ok: false,
      failed: 1,
      failures: [{ doc: 'ledger', ok: false, problem: expect.stringMatching(/does not apply/) }],
    })

    // The update log still holds every edit: the version before the last one, to a file, and
    // into a document of its own.
    const good = join(backend.backupDest, '..', 'ledger-good.ydoc')
    const exported = jsonOf<{ exact: boolean; upTo: string }>(
      await runCli(
        ['export', 'ledger', '--at', String(idTimeMs(ids[1]!)), '--out', good, '--json'],
        env,
      ),
    )
    expect(exported).toMatchObject({ exact: true, upTo: ids[1] })
    const restored = jsonOf<{ appended: { id: string } | null }>(
      await runCli(['import', 'ledger-restored', good, '--json'], env),
    )
    expect(restored.appended).not.toBeNull()
    const res = await fetch(`${node.httpUrl}/docs/ledger-restored`)
    expect(docToJSON(new Uint8Array(await res.arrayBuffer()))).toEqual({ text: 'alpha beta ' })
  } finally {
    await storage.close()
    await backend.close()
  }
}, 120_000)
