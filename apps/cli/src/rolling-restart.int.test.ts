import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { expect, it, vi } from 'vitest'
import { createLogger } from '@streambed/common'
import { openStorage } from '@streambed/storage'
import {
  connectClient,
  expectedEntries,
  freePort,
  type ManagedProcess,
  startTyping,
  type TestClient,
  type Typist,
  uniquePrefix,
  useRedisServer,
} from '@streambed/testing'
import { parseWorkerConfig } from '@streambed/worker-app'
import { startCliProcess } from './testing/cli-process.js'
import { startHaproxy, type Haproxy } from './testing/haproxy.js'

// A rolling restart as an operator runs one: every server node in turn gets SIGTERM, drains, exits
// and starts again on its address, behind the balancer the compose stack uses (HAProxy with
// infra/haproxy/haproxy.cfg), while clients keep typing.

const redis = useRedisServer()

const DRAIN_MS = 2_000
const DOCS = ['roll-a', 'roll-b', 'roll-c']
const CLIENTS_PER_DOC = 3
// A fast typist: 10 edits a second per client.
const TYPE_EVERY_MS = 100
// Production checks every 2 s; the test checks faster so a restart takes a few seconds.
const CHECKS = { interMs: 200, fastinterMs: 100, downinterMs: 200, fall: 2, rise: 2 }

/** A client with what the test observes of its connection. */
interface Watched {
  readonly client: TestClient
  readonly doc: string
  readonly typist: Typist
  /** Every close the client saw: when (performance.now()) and with which code. */
  readonly closes: { at: number; code: number | null }[]
  /** Per reconnection: ms from the close until the client was synced again. */
  readonly gapsMs: number[]
}

const watch = (client: TestClient, doc: string, label: string): Watched => {
  const closes: Watched['closes'] = []
  const gapsMs: number[] = []
  let downSince: number | undefined
  client.provider.on('connection-close', (event) => {
    const at = performance.now()
    closes.push({ at, code: event?.code ?? null })
    downSince ??= at
  })
  client.provider.on('sync', (synced) => {
    if (!synced || downSince === undefined) return
    gapsMs.push(performance.now() - downSince)
    downSince = undefined
  })
  return { client, doc, typist: startTyping(client, label, TYPE_EVERY_MS), closes, gapsMs }
}

/** GET /readyz: the status, or 'refused' when nothing accepts the connection. */
const readyz = async (port: number): Promise<{ status: number | 'refused'; body: unknown }> => {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/readyz`, {
      signal: AbortSignal.timeout(5_000),
    })
    return { status: res.status, body: await res.json() }
  } catch {
    return { status: 'refused', body: null }
  }
}

const allUp = async (lb: Haproxy) => {
  const servers = await lb.servers()
  expect(servers.map((s) => `${s.name} ${s.status}`)).toEqual(servers.map((s) => `${s.name} UP`))
}

const allSynced = (watched: readonly Watched[]) => {
  const behind = watched
    .filter((w) => !(w.client.provider.synced && w.client.provider.wsconnected))
    .map((w) => ({
      label: w.typist.label,
      connected: w.client.provider.wsconnected,
      closes: w.closes.map((c) => `${c.code ?? 'local'}@${Math.round(c.at)}`),
    }))
  expect(behind, `at ${Math.round(performance.now())}`).toEqual([])
}

/** The `log` array holds exactly `expected`, each entry once. */
const expectExactly = (log: string[], expected: Set<string>) => {
  expect(log.length).toBe(expected.size)
  expect(new Set(log)).toEqual(expected)
}

interface DrainObservation {
  node: number
  connectionsBefore: number
  /** 1001 closes the clients saw while the node drained, ms after SIGTERM. */
  closesAtMs: number[]
  /** /readyz while draining: on the closed public port, and on METRICS_PORT (and its reason). */
  readyz: { port: number | 'refused'; metricsPort: number | 'refused'; reason: unknown }
  /** HAProxy showed the node DOWN, the process exited, HAProxy showed every node UP again. */
  downMs: number
  exitedMs: number
  upAgainMs: number
}

it('restarts every node in turn behind HAProxy while clients type: nothing lost, all converge', async () => {
  const storageDir = await mkdtemp(join(tmpdir(), 'streambed-rolling-'))
  const env = {
    REDIS_URL: redis.url,
    REDIS_PREFIX: uniquePrefix('rolling'),
    STORAGE_DIR: storageDir,
    DRAIN_MS: String(DRAIN_MS),
  }
  // Compaction runs during the restarts too (joins then read storage + tail). Entries stay 3 s,
  // not 60: an edit that follows a compaction which had to leave young entries in the stream is
  // stored only once those may be trimmed (MIN_MESSAGE_LIFETIME_MS later, not COMPACT_IDLE_MS).
  const workerEnv = {
    ...env,
    PORT: '0',
    COMPACT_IDLE_MS: '500',
    COMPACT_INTERVAL_MS: '3000',
    MIN_MESSAGE_LIFETIME_MS: '3000',
  }
  // Fixed addresses, so HAProxy's server list stays valid across restarts; /readyz with details
  // (connections) on a METRICS_PORT, which also answers while the node drains.
  const addresses = await Promise.all(
    DOCS.map(async () => ({ port: await freePort(), metricsPort: await freePort() })),
  )
  const startNode = (i: number) => {
    const a = addresses[i]!
    return startCliProcess('server', {
      ...env,
      PORT: String(a.port),
      METRICS_PORT: String(a.metricsPort),
    })
  }
  const nodes: ManagedProcess[] = []
  let worker: ManagedProcess | undefined
  let lb: Haproxy | undefined
  const watched: Watched[] = []
  try {
    // One at a time: each start loads the sources through tsx, and the cores are shared.
    for (const i of addresses.keys()) nodes.push(await startNode(i))
    worker = await startCliProcess('worker', workerEnv)
    const balancer = (lb = await startHaproxy({
      backends: addresses.map((a) => a.port),
      checks: CHECKS,
    }))
    await vi.waitFor(() => allUp(balancer), { timeout: 15_000, interval: 50 })

    // Clients of one document land on different nodes (HAProxy hands out connections in turn).
    for (const [d, doc] of DOCS.entries())
      for (let c = 0; c < CLIENTS_PER_DOC; c++) {
        const client = connectClient(balancer.url, doc, { maxBackoffTime: 500 })
        watched.push(watch(client, doc, `d${d}c${c}`))
      }
    await Promise.all(watched.map((w) => w.client.synced(30_000)))
    const typedMore = async (n: number) => {
      const from = watched.map((w) => w.typist.typed)
      await vi.waitFor(
        () =>
          watched.forEach((w, i) => expect(w.typist.typed).toBeGreaterThanOrEqual(from[i]! + n)),
        { timeout: 30_000 },
      )
    }
    await typedMore(10)

    const observations: DrainObservation[] = []
    const restartStarted = performance.now()
    for (const i of addresses.keys()) {
      const { port, metricsPort } = addresses[i]!
      const before = await readyz(metricsPort)
      const connectionsBefore = (before.body as { connections: number }).connections
      // Spreading needs a few sockets to spread (round robin gives each node 3 or more).
      expect(connectionsBefore).toBeGreaterThanOrEqual(3)

      const t0 = performance.now()
      const exited = nodes[i]!.kill('SIGTERM')
      // While it drains the node is not ready: 503 where it still listens (METRICS_PORT), the
      // public port closed; and HAProxy takes it out of the rotation.
      const whileDraining = await vi.waitFor(
        async () => {
          const metrics = await readyz(metricsPort)
          expect(metrics.status).toBe(503)
          return { metrics, main: await readyz(port) }
        },
        { timeout: DRAIN_MS, interval: 20 },
      )
      await vi.waitFor(async () => expect((await balancer.servers())[i]?.status).toMatch(/^DOWN/), {
        timeout: DRAIN_MS,
        interval: 20,
      })
      const downAt = performance.now()
      expect(await exited).toBe(0)
      const exitedAt = performance.now()

      nodes[i] = await startNode(i)
      await vi.waitFor(() => allUp(balancer), { timeout: 15_000, interval: 50 })
      const upAt = performance.now()
      // Its clients are back (through the other nodes) before the next node goes.
      await vi.waitFor(() => allSynced(watched), { timeout: 20_000, interval: 50 })

      observations.push({
        node: i + 1,
        connectionsBefore,
        closesAtMs: watched
          .flatMap((w) => w.closes)
          .filter((c) => c.code === 1001 && c.at >= t0 && c.at <= exitedAt)
          .map((c) => c.at - t0)
          .sort((a, b) => a - b),
        readyz: {
          port: whileDraining.main.status,
          metricsPort: whileDraining.metrics.status,
          reason: (whileDraining.metrics.body as { reason?: unknown }).reason,
        },
        downMs: downAt - t0,
        exitedMs: exitedAt - t0,
        upAgainMs: upAt - t0,
      })
    }
    const restartMs = performance.now() - restartStarted

    // The worker too: it finishes the tasks in hand, hands back the others, exits 0; its
    // successor takes over.
    const workerStopped = performance.now()
    expect(await worker.kill('SIGTERM')).toBe(0)
    const workerStopMs = performance.now() - workerStopped
    worker = await startCliProcess('worker', workerEnv)

    await typedMore(10)
    for (const w of watched) w.typist.stop()

    // Every client of a document has every entry typed into it, exactly once.
    const expectedOf = (doc: string) =>
      expectedEntries(watched.filter((w) => w.doc === doc).map((w) => w.typist))
    await vi.waitFor(
      () => {
        for (const w of watched)
          expectExactly(w.client.doc.getArray<string>('log').toArray(), expectedOf(w.doc))
      },
      { timeout: 20_000, interval: 200 },
    )
    // A fresh client through HAProxy agrees.
    for (const doc of DOCS) {
      const fresh = connectClient(balancer.url, doc)
      try {
        await fresh.synced(30_000)
        expectExactly(fresh.doc.getArray<string>('log').toArray(), expectedOf(doc))
      } finally {
        fresh.destroy()
      }
    }
    // Storage agrees once the worker compacted up to the last entry.
    const storage = await openStorage(parseWorkerConfig(env), createLogger({ level: 'silent' }))
    try {
      for (const doc of DOCS) {
        const last = await redis.admin.hget(`${env.REDIS_PREFIX}:v1:{${doc}}:m`, 'last')
        expect(last).toBeTruthy()
        await vi.waitFor(async () => expect((await storage.load(doc))?.watermark).toBe(last), {
          timeout: 20_000,
          interval: 200,
        })
        const stored = new Y.Doc()
        Y.applyUpdate(stored, (await storage.load(doc))!.state)
        expectExactly(stored.getArray<string>('log').toArray(), expectedOf(doc))
        stored.destroy()
      }
    } finally {
      await storage.close()
    }

    const maxGapMs = watched.map((w) => Math.round(Math.max(0, ...w.gapsMs)))
    console.log(
      'rolling restart:',
      JSON.stringify({
        restartMs: Math.round(restartMs),
        workerStopMs: Math.round(workerStopMs),
        drains: observations.map((o) => ({
          ...o,
          closesAtMs: o.closesAtMs.map(Math.round),
          downMs: Math.round(o.downMs),
          exitedMs: Math.round(o.exitedMs),
          upAgainMs: Math.round(o.upAgainMs),
        })),
        maxDisconnectedMsPerClient: maxGapMs,
        reconnectsPerClient: watched.map((w) => w.gapsMs.length),
        typedPerClient: watched.map((w) => w.typist.typed),
        balancer: (await balancer.servers()).map(({ name, stot, econ, wretr, wredis }) => ({
          name,
          stot,
          econ,
          wretr,
          wredis,
        })),
      }),
    )

    // The drains: not ready at once, every socket closed with 1001, spread over DRAIN_MS.
    for (const o of observations) {
      const node = `node ${o.node}: ${JSON.stringify(o)}`
      expect(o.readyz.metricsPort, node).toBe(503)
      expect(o.readyz.reason, node).toBe('shutting down')
      expect(o.readyz.port, node).not.toBe(200)
      expect(o.closesAtMs.length, node).toBeGreaterThanOrEqual(o.connectionsBefore)
      // n sockets close at 0, D/n, …, (n-1)·D/n after the drain began: not in one instant.
      const spanMs = o.closesAtMs.at(-1)! - o.closesAtMs[0]!
      expect(spanMs, node).toBeGreaterThanOrEqual(DRAIN_MS / 2)
      // HAProxy marked it down during its drain; it exited only once the last socket was closed.
      expect(o.downMs, node).toBeLessThan(o.exitedMs)
      expect(o.exitedMs, node).toBeGreaterThanOrEqual(o.closesAtMs.at(-1)!)
    }
    // Clients only ever saw 1001: no reconnection failed at the balancer (a draining node's
    // refusal is retried on another node) and no node refused a client's updates.
    expect(watched.flatMap((w) => w.closes).filter((c) => c.code !== 1001)).toEqual([])
    // Each client is back within a few reconnect attempts.
    for (const g of maxGapMs) expect(g).toBeLessThan(10_000)
  } catch (err) {
    // What the balancer and the nodes saw, for the failure report.
    console.log(`haproxy:\n${lb?.proc.output.slice(-40).join('\n')}`)
    for (const n of nodes)
      console.log(
        `node:\n${n.output
          .filter((l) => !l.includes('"level":30'))
          .slice(-20)
          .join('\n')}`,
      )
    throw err
  } finally {
    for (const w of watched) {
      w.typist.stop()
      w.client.destroy()
    }
    await lb?.close()
    await Promise.all([...nodes, ...(worker ? [worker] : [])].map((n) => n.kill('SIGKILL')))
    await rm(storageDir, { recursive: true, force: true })
  }
}, 150_000)
