/**
 * Fuzzing on running nodes (issue 8, item 6): fast-check generates attacks — random frames,
 * valid y-websocket messages mutated, updates that reuse (client, clock) ids with other content,
 * awareness abuse — sent through raw sockets and POST /docs to two in-process nodes on one Redis,
 * with a worker compacting. After every case: both nodes are up, the other document's clients
 * still talk, every view of the document holds the same content (DESIGN.md invariant 3), nothing
 * a client received fails to apply, presence belongs to its connection (invariant 7). At the end,
 * the compacted state and the archived log of every case document equal what the clients held.
 *
 * CI runs a fixed number of cases with a fixed seed (about a minute on 2 cores). Environment:
 *   FUZZ_RUNS=800     more cases (long local runs; about 10 minutes)
 *   FUZZ_SEED=123     another seed (a failure prints the seed and path to replay it)
 *   FUZZ_PATH=3:1     with the failing seed: replay only that case
 *   FUZZ_SHRINK=1     shrink a failing case to a smaller one (slow: each try is a case)
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import * as Y from 'yjs'
import type { WebsocketProvider } from 'y-websocket'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createLogger } from '@streambed/common'
import {
  decodeAwarenessUpdate,
  decodeMessage,
  encodeSyncStep1,
} from '@streambed/protocol'
import { startTestNode, type TestNode } from '@streambed/server/testing'
import { openStorage, type DocStorage } from '@streambed/storage'
import {
  type DocStreams,
  type Keys,
  createDocStreams,
  createKeys,
  partsOf,
  readDocument,
} from '@streambed/streams'
import {
  type RawClient,
  type TestClient,
  connectClient,
  connectRaw,
  uniquePrefix,
  useRedisServer,
} from '@streambed/testing'
import { parseWorkerConfig } from '@streambed/worker-app'
import { startTestWorker, type TestWorker } from '@streambed/worker-app/testing'
import { viewOfDoc, viewOfEncoded, viewOfSnapshot, viewOfUpdates } from './testing/doc-view.js'
import { type CasePlan, type Step, casePlanArb } from './testing/fuzz-plan.js'
import {
  type FrameContext,
  applyEdit,
  buildFrame,
  buildWriters,
  hex,
} from './testing/fuzz-frames.js'

const redis = useRedisServer()

const envNumber = (name: string, fallback: number): number => {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got ${raw}`)
  return n
}
/** About a minute on 2 cores: 80 cases in 41-45 s, the whole file in 50-54 s (2026-11-27). */
const RUNS = envNumber('FUZZ_RUNS', 80)
const SEED = envNumber('FUZZ_SEED', 20_261_127)
const PATH = process.env.FUZZ_PATH || undefined
const SHRINK = process.env.FUZZ_SHRINK === '1'

const MAX_MESSAGE_BYTES = 64 * 1024
const MAX_STATE_BYTES = 1024
/**
 * Close codes an attacker socket may see: ours, bad message, too large, dropped (2x limit), and
 * resync for an update that skips clocks (CLOCK_GAP).
 */
const ATTACKER_CLOSE_CODES = new Set([1000, 1005, 1006, 4400, 4413, 4509])
/** The same for POST /docs: 409 is CLOCK_GAP. */
const POST_STATUSES = new Set([200, 400, 409, 413])

/**
 * The fuzz found three production bugs (issue 8 item 6), all refused now: items naming an id of
 * their own client at or after their own clock (inspectUpdate), updates reusing ids with other
 * content in a way their new items contradict (DocStreams.append), and items naming neighbours in
 * an order the document contradicts (StructureGuard, decision 0014).
 */
const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
const tick = () => new Promise<void>((r) => setImmediate(r))

/** A failure that waiting cannot change (bytes that fail to apply): ends the case at once. */
class CaseFailure extends Error {}

type Handler = WebsocketProvider['messageHandlers'][number]

/**
 * y-protocols catches what Y.applyUpdate throws in a client and logs it with this message (the
 * document is then left half-applied). While a watched client handles a message, such logs are
 * collected here instead, so the case fails naming the client and the bytes.
 */
const YJS_CAUGHT = 'Caught error while handling a Yjs update'
let caughtByClient: unknown[] | null = null
const consoleError = console.error.bind(console)
const catchClientErrors = (...args: unknown[]) => {
  if (caughtByClient && args[0] === YJS_CAUGHT) caughtByClient.push(args[1])
  else consoleError(...args)
}

/** A y-websocket client whose sync and awareness handlers record what throws (and the bytes). */
interface Honest {
  readonly client: TestClient
  readonly label: string
  /** Close codes of its connections while watched (any is a failure). */
  readonly closes: number[]
  readonly errors: string[]
  /** The sync messages it received, in order (for the report of a failing case). */
  readonly received: Uint8Array[]
}

const watchHonest = (client: TestClient, label: string): Honest => {
  const closes: number[] = []
  const errors: string[] = []
  const received: Uint8Array[] = []
  client.provider.on('connection-close', (event) => {
    // null: closed by this side (destroy); only the server's closes count.
    if (event) closes.push(Number((event as { code?: unknown }).code))
  })
  for (const type of [0, 1]) {
    const original = client.provider.messageHandlers[type] as Handler
    client.provider.messageHandlers[type] = (encoder, decoder, provider, emitSynced, t) => {
      const bytes = decoder.arr
      if (type === 0) received.push(bytes)
      const caught: unknown[] = []
      caughtByClient = caught
      try {
        original(encoder, decoder, provider, emitSynced, t)
      } catch (err) {
        caught.push(err)
      } finally {
        caughtByClient = null
      }
      for (const err of caught)
        errors.push(`${label} failed to apply a message (${String(err)}): ${hex(bytes)}`)
    }
  }
  return { client, label, closes, errors, received }
}

/** A raw socket that joins like a client and applies everything it receives to a Y.Doc. */
interface Observer {
  readonly raw: RawClient
  readonly label: string
  readonly doc: Y.Doc
  applied: number
  synced: boolean
  readonly errors: string[]
}

const observe = async (url: string, label: string): Promise<Observer> => {
  const raw = connectRaw(url)
  await raw.opened
  raw.send(encodeSyncStep1(new Uint8Array([0])))
  return { raw, label, doc: new Y.Doc(), applied: 0, synced: false, errors: [] }
}

const catchUp = (o: Observer): void => {
  while (o.applied < o.raw.messages.length) {
    const frame = o.raw.messages[o.applied++] as Uint8Array
    let msg: ReturnType<typeof decodeMessage>
    try {
      msg = decodeMessage(frame)
    } catch (err) {
      o.errors.push(`${o.label} got a frame that does not decode (${String(err)}): ${hex(frame)}`)
      continue
    }
    try {
      if (msg.kind === 'sync-step2' || msg.kind === 'sync-update') Y.applyUpdate(o.doc, msg.update)
      if (msg.kind === 'sync-step2') o.synced = true
      if (msg.kind === 'awareness') decodeAwarenessUpdate(msg.update)
    } catch (err) {
      o.errors.push(
        `${o.label} got a ${msg.kind} that fails to apply (${String(err)}): ${hex(frame)}`,
      )
    }
  }
}

interface Attacker {
  readonly raw: RawClient
  readonly label: string
  close: { code: number; reason: string } | null
}

/** Text of `a` and `b` around where they first differ. */
const firstDifference = (a: string, b: string): string => {
  let i = 0
  while (i < a.length && a[i] === b[i]) i++
  const from = Math.max(0, i - 120)
  return `at ${i}:\n    ${a.slice(from, i + 200)}\n    ${b.slice(from, i + 200)}`
}

const metric = async (url: string, line: RegExp): Promise<number> => {
  const text = await (await fetch(`${url}/metrics`)).text()
  let sum = 0
  for (const l of text.split('\n')) {
    const m = line.exec(l)
    if (m) sum += Number(m[1])
  }
  return sum
}

describe('fuzzing two nodes and a worker', () => {
  let prefix: string
  let dir: string
  let nodes: [TestNode, TestNode]
  let worker: TestWorker
  let storage: DocStorage
  let streams: DocStreams
  let keys: Keys
  let bystanders: [Honest, Honest]
  /** Per case document: the content every view agreed on. */
  const finals: { doc: string; view: string }[] = []
  /** POSTs still waiting for an answer when their case ended (updates waiting for a gap). */
  const slowPosts: { label: string; status: Promise<number> }[] = []
  let caseNo = 0
  /** What the run did, printed at the end (to see that the generators reach what they should). */
  const stats = new Map<string, number>()
  const count = (what: string) => stats.set(what, (stats.get(what) ?? 0) + 1)

  beforeAll(async () => {
    console.error = catchClientErrors
    prefix = uniquePrefix('fuzz')
    dir = await mkdtemp(join(tmpdir(), 'streambed-fuzz-'))
    const env = {
      REDIS_URL: redis.url,
      REDIS_PREFIX: prefix,
      STORAGE: 'fs',
      STORAGE_DIR: dir,
    }
    const nodeEnv = {
      ...env,
      AUTH_MODE: 'none',
      WS_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES),
      AWARENESS_MAX_STATE_BYTES: String(MAX_STATE_BYTES),
      HTTP_MAX_REQUESTS_PER_SECOND: '100000',
      WS_MAX_MESSAGES_PER_SECOND: '100000',
    }
    nodes = [await startTestNode(nodeEnv), await startTestNode(nodeEnv)]
    worker = await startTestWorker(env)
    storage = await openStorage(parseWorkerConfig(env), createLogger({ level: 'silent' }))
    keys = createKeys(prefix)
    streams = createDocStreams({ redis: redis.admin, keys, queueShards: 1, storage })
    bystanders = [
      watchHonest(connectClient(nodes[0].url, 'fz-bystander'), 'bystander 0'),
      watchHonest(connectClient(nodes[1].url, 'fz-bystander'), 'bystander 1'),
    ]
    await Promise.all(bystanders.map((b) => b.client.synced()))
  })

  afterAll(async () => {
    console.error = consoleError
    for (const b of bystanders ?? []) b.client.destroy()
    await worker?.close()
    for (const n of nodes ?? []) await n.close()
    await storage?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })


  /** Every way to see `doc`; equal texts = equal content. */
  const views = async (
    doc: string,
    honest: readonly Honest[],
    observers: readonly Observer[],
    joiner: Honest,
  ): Promise<Record<string, string>> => {
    const out: Record<string, string> = {}
    // The reference: storage state, then the stream's entries, in order, in one Y.Doc.
    const read = await readDocument(storage, streams, doc)
    try {
      out['storage + stream in order'] = viewOfUpdates(partsOf(read))
      // What a worker would store now: that document, garbage-collected and encoded.
      out['compaction of storage + stream'] = viewOfSnapshot(partsOf(read))
    } catch (err) {
      const parts = partsOf(read)
        .map((p) => hex(p))
        .join('\n    ')
      throw new CaseFailure(`the stream's entries fail to apply (${String(err)}):\n    ${parts}`)
    }
    for (const [i, node] of nodes.entries()) {
      const res = await fetch(`${node.httpUrl}/docs/${doc}`)
      const bytes = new Uint8Array(await res.arrayBuffer())
      if (res.status !== 200) throw new CaseFailure(`GET /docs on node ${i}: ${res.status}`)
      try {
        out[`GET /docs node ${i}`] = viewOfUpdates([bytes])
      } catch (err) {
        throw new CaseFailure(
          `GET /docs of node ${i} fails to apply (${String(err)}): ${hex(bytes)}`,
        )
      }
    }
    for (const h of [...honest, joiner]) {
      out[h.label] = viewOfEncoded(h.client.doc)
      out[`${h.label} (its own doc)`] = viewOfDoc(h.client.doc)
    }
    for (const o of observers) {
      catchUp(o)
      out[o.label] = viewOfEncoded(o.doc)
      out[`${o.label} (its own doc)`] = viewOfDoc(o.doc)
    }
    return out
  }

  /** Waits until the document's stream stops changing (the last appended id is stable). */
  const quiet = async (doc: string) => {
    let last = ''
    let stable = 0
    const deadline = Date.now() + 10_000
    while (stable < 3 && Date.now() < deadline) {
      const now = `${await redis.admin.hget(keys.meta(doc), 'last')}`
      stable = now === last ? stable + 1 : 0
      last = now
      await delay(60)
    }
  }

  const runCase = async (plan: CasePlan): Promise<void> => {
    const n = caseNo++
    const doc = `fz-${n}`
    const log: string[] = []
    const fail = (message: string): never => {
      throw new CaseFailure(`case ${n} (${doc}): ${message}\n  log:\n    ${log.join('\n    ')}`)
    }
    const honest = [
      watchHonest(connectClient(nodes[0].url, doc), 'live client on node 0'),
      watchHonest(connectClient(nodes[1].url, doc), 'live client on node 1'),
    ]
    const observers: Observer[] = []
    const attackers: (Attacker | undefined)[] = []
    const allAttackers: Attacker[] = []
    let joiner: Honest | undefined
    try {
      await Promise.all(honest.map((h) => h.client.synced()))
      const local = honest.map((h, i) => ({ user: `honest-${i}`, case: n }))
      honest.forEach((h, i) => h.client.provider.awareness.setLocalState(local[i] ?? null))
      honest.forEach((h, i) =>
        h.client.doc.transact(() => {
          h.client.doc.getText('t').insert(0, `h${i} `)
          h.client.doc.getMap('m').set(`h${i}`, i)
        }),
      )
      for (const [i, node] of nodes.entries())
        observers.push(await observe(`${node.url}/${doc}`, `raw observer on node ${i}`))
      await vi.waitFor(() => {
        for (const o of observers) catchUp(o)
        expect(observers.every((o) => o.synced)).toBe(true)
        for (const h of honest) expect(h.client.doc.getText('t').length).toBe(6)
      })

      const writers = buildWriters(plan)
      const ctx: FrameContext = {
        writers,
        clients: plan.clients,
        awarenessPool: [...plan.clients, 4242, 4243],
        honest: (i) => {
          const h = honest[i % honest.length] as Honest
          const id = h.client.doc.clientID
          return { id, clock: h.client.provider.awareness.meta.get(id)?.clock ?? 0 }
        },
        sentClocks: new Map(),
        maxMessageBytes: MAX_MESSAGE_BYTES,
        maxStateBytes: MAX_STATE_BYTES,
      }
      const socketFor = async (step: Extract<Step, { s: 'send' }>): Promise<Attacker> => {
        const open = attackers[step.sock]
        if (open && open.raw.ws.readyState === open.raw.ws.OPEN) return open
        const node = nodes[step.node] as TestNode
        const attacker: Attacker = {
          raw: connectRaw(`${node.url}/${doc}`),
          label: `socket ${allAttackers.length} on node ${step.node}`,
          close: null,
        }
        void attacker.raw.closed.then((c) => {
          attacker.close = c
          log.push(`${attacker.label} closed: ${c.code} ${c.reason}`)
        })
        await attacker.raw.opened
        attackers[step.sock] = attacker
        allAttackers.push(attacker)
        return attacker
      }

      for (const [k, step] of plan.steps.entries()) {
        switch (step.s) {
          case 'send': {
            const attacker = await socketFor(step)
            const { frame } = buildFrame(ctx, step.frame)
            log.push(`#${k} ${attacker.label} sends ${step.frame.f}: ${hex(frame, 1024)}`)
            count(
              `sent ${step.frame.f === 'mutated' ? `mutated ${step.frame.base.f}` : step.frame.f}`,
            )
            attacker.raw.send(frame)
            break
          }
          case 'post': {
            const node = nodes[step.node] as TestNode
            const { body } = buildFrame(ctx, step.frame)
            const label = `#${k} POST to node ${step.node} (${step.frame.f}): ${hex(body, 1024)}`
            log.push(label)
            const status = fetch(`${node.httpUrl}/docs/${doc}`, { method: 'POST', body }).then(
              async (res) => {
                await res.arrayBuffer()
                return res.status
              },
            )
            const answer = await Promise.race([status, delay(1500).then(() => 'pending' as const)])
            if (answer === 'pending') slowPosts.push({ label: `case ${n} ${label}`, status })
            else if (!POST_STATUSES.has(answer)) fail(`POST answered ${answer}`)
            else log.push(`  -> ${answer}`)
            count(`POST answered ${answer}`)
            break
          }
          case 'honest': {
            const h = honest[step.who] as Honest
            log.push(`#${k} ${h.label} edits: ${JSON.stringify(step.edit)}`)
            try {
              h.client.doc.transact(() => applyEdit(h.client.doc, step.edit))
            } catch (err) {
              fail(`an honest edit threw: ${String(err)}`)
            }
            break
          }
          case 'close':
            attackers[step.sock]?.raw.close()
            break
          case 'tick':
            await (step.ms === 0 ? tick() : delay(step.ms))
            break
        }
      }

      // The attack is over: close what is still open, then let the stream settle.
      for (const a of allAttackers) a.raw.close()
      await Promise.all(allAttackers.map((a) => Promise.race([a.raw.closed, delay(5000)])))
      for (const a of allAttackers) {
        count(`attacker closed ${a.close?.code} ${a.close?.reason.replace(/\d+/g, 'N')}`)
        if (!a.close) fail(`${a.label} did not close`)
        else if (!ATTACKER_CLOSE_CODES.has(a.close.code))
          fail(`${a.label} was closed with ${a.close.code} (${a.close.reason})`)
      }
      await quiet(doc)

      // The live documents are still usable: an edit on one reaches the other.
      honest[0]!.client.doc.getMap('m').set('end', n)
      await vi
        .waitFor(() => expect(honest[1]!.client.doc.getMap('m').get('end')).toBe(n))
        .catch(() => fail('an edit after the attack did not reach the other live client'))

      const joinNode = n % 2
      joiner = watchHonest(connectClient(nodes[joinNode]!.url, doc), `joiner on node ${joinNode}`)
      await joiner.client.synced()
      const everyone = [...honest, joiner]

      // Nothing a client received failed to apply.
      for (const o of observers) catchUp(o)
      for (const x of [...everyone, ...observers]) {
        if (x.errors.length > 0) fail(x.errors.join('\n'))
      }

      // Invariant 3: every view of the document holds the same content.
      let agreed = ''
      let fatal: CaseFailure | null = null
      await vi
        .waitFor(
          async () => {
            let all: Record<string, string>
            try {
              all = await views(doc, honest, observers, joiner!)
            } catch (err) {
              // Bytes that fail to apply stay that way: no point in waiting.
              if (!(err instanceof CaseFailure)) throw err
              fatal = err
              return
            }
            const reference = all['storage + stream in order'] as string
            const differing = Object.entries(all).filter(([, v]) => v !== reference)
            if (differing.length > 0) {
              const [name, view] = differing[0] as [string, string]
              const read = await readDocument(storage, streams, doc)
              const stored = read.stored ? hex(read.stored.state) : '-'
              const parts = [
                `storage (up to ${read.stored?.watermark ?? '-'}): ${stored}`,
                ...read.tail.entries.map((e) => `entry ${e.id}: ${hex(e.update)}`),
              ]
              const got = [...honest, joiner!]
                .filter((h) => differing.some(([k]) => k.startsWith(h.label)))
                .map(
                  (h) =>
                    `${h.label} received:\n    ${h.received.map((m) => hex(m)).join('\n    ')}`,
                )
              const bytes = [...parts, ...got].join('\n  ')
              throw new Error(
                `${differing.map(([k]) => k).join(', ')} differ from storage + stream in order; ` +
                  `${name} ${firstDifference(reference, view)}\n  ${bytes}`,
              )
            }
            agreed = reference
          },
          { timeout: 15_000, interval: 200 },
        )
        .catch((err: unknown) => fail(err instanceof Error ? err.message : String(err)))
      if (fatal) fail((fatal as CaseFailure).message)
      finals.push({ doc, view: agreed })
      const entries = (await readDocument(storage, streams, doc)).tail.entries.length
      count(`streams with ${entries < 4 ? entries : entries < 8 ? '4-7' : '8+'} entries at check`)

      // No honest connection was closed, and none failed to apply what it got meanwhile.
      for (const x of [...everyone, ...observers]) {
        if (x.errors.length > 0) fail(x.errors.join('\n'))
      }
      for (const h of [...everyone, ...bystanders]) {
        if (h.closes.length > 0) fail(`${h.label} was closed: ${h.closes.join(', ')}`)
      }

      // Invariant 7: presence belongs to its connection. The honest clients keep their own states
      // and see each other's; once the attackers are gone nobody else is left, also for a joiner.
      const ids = honest.map((h) => h.client.doc.clientID)
      await vi
        .waitFor(
          () => {
            for (const [i, h] of honest.entries()) {
              const aw = h.client.provider.awareness
              expect(aw.getLocalState(), `${h.label} own state`).toEqual(local[i])
              const other = 1 - i
              expect(aw.getStates().get(ids[other]!), `${h.label} sees the other`).toEqual(
                local[other],
              )
              expect([...aw.getStates().keys()].sort(), `${h.label} awareness ids`).toEqual(
                [...ids].sort(),
              )
            }
            const jw = joiner!.client.provider.awareness
            const seen = [...jw.getStates().keys()].filter(
              (id) => id !== joiner!.client.doc.clientID,
            )
            expect(seen.sort(), 'the joiner sees exactly the honest clients').toEqual(
              [...ids].sort(),
            )
            for (const [i, id] of ids.entries()) expect(jw.getStates().get(id)).toEqual(local[i])
          },
          { timeout: 8000, interval: 100 },
        )
        .catch((err: unknown) =>
          fail(`awareness: ${err instanceof Error ? err.message : String(err)}`),
        )

      // Invariant 6: the nodes are up and another document's clients still talk.
      for (const node of nodes) {
        const res = await fetch(`${node.httpUrl}/healthz`)
        if (res.status !== 200) fail(`/healthz of ${node.nodeId} answered ${res.status}`)
        await res.arrayBuffer()
      }
      bystanders[0].client.doc.getArray<number>('log').push([n])
      await vi
        .waitFor(() =>
          expect(bystanders[1].client.doc.getArray<number>('log').toArray()).toContain(n),
        )
        .catch(() => fail('the bystander document stopped working'))
    } finally {
      for (const h of [...honest, ...(joiner ? [joiner] : [])]) h.client.destroy()
      for (const o of observers) {
        o.raw.close()
        o.doc.destroy()
      }
      for (const a of allAttackers) a.raw.close()
    }
  }

  it(
    'keeps every view equal, presence owned and the nodes up under attack',
    async () => {
      const internalErrors = () =>
        Promise.all(
          nodes.map((node) =>
            metric(node.httpUrl, /^streambed_errors_total\{code="INTERNAL"\} (\d+)/),
          ),
        )
      const started = Date.now()
      try {
        await fc.assert(
          fc.asyncProperty(casePlanArb, async (plan) => {
            const before = await internalErrors()
            await runCase(plan)
            const after = await internalErrors()
            if (after.some((v, i) => v !== before[i]))
              throw new CaseFailure(
                `a node counted INTERNAL errors: ${String(before)} -> ${String(after)}`,
              )
          }),
          {
            numRuns: RUNS,
            seed: SEED,
            ...(PATH ? { path: PATH } : {}),
            endOnFailure: !SHRINK,
          },
        )
      } catch (err) {
        console.error(
          `fuzz failed (seed ${SEED}); replay: FUZZ_SEED=${SEED} FUZZ_PATH=<path above> ` +
            'npx vitest run apps/cli/src/fuzz.int.test.ts',
        )
        throw err
      }
      const summary = [...stats].sort(([a], [b]) => (a < b ? -1 : 1))
      console.info(
        `fuzz: ${caseNo} cases in ${Date.now() - started} ms (seed ${SEED})\n` +
          summary.map(([k, v]) => `  ${k}: ${v}`).join('\n'),
      )

      // POSTs that waited for a gap were refused (400) in the end, or filled (200).
      for (const p of slowPosts) {
        const status = await p.status
        expect(POST_STATUSES.has(status), `${p.label} answered ${status}`).toBe(true)
      }

      // Compaction: every case document ends up in storage, equal to its archived log replayed.
      await vi.waitFor(
        async () => {
          for (const { doc } of finals)
            expect(await redis.admin.exists(keys.stream(doc)), doc).toBe(0)
        },
        { timeout: 60_000, interval: 250 },
      )
      let late = 0
      for (const { doc, view } of finals) {
        const stored = await storage.load(doc)
        expect(stored, doc).not.toBeNull()
        // Every entry ever appended, in order: the reference (an update that waited for a gap
        // to fill may have landed after its case was checked, so it can differ from `view`).
        const log = await storage.readLog(doc)
        const replayed = viewOfUpdates(log.map((e) => e.update))
        if (replayed !== view) late++
        expect(viewOfUpdates([stored!.state]), `${doc}: compacted state`).toBe(replayed)
      }
      console.info(`fuzz: ${late} of ${finals.length} documents changed after their case`)
      expect(
        await metric(worker.httpUrl, /^streambed_compaction_failures_total(?:\{.*\})? (\d+)/),
      ).toBe(0)
    },
    Math.max(300_000, RUNS * 10_000),
  )
})
