/**
 * A Redis Cluster master killed while clients keep typing, with asynchronous replication: the
 * replica may lack the typists' last entries, so their next updates continue clocks the document
 * lacks (CLOCK_GAP). They must resync (4509) and send the missing clocks again; a 44xx close would
 * end y-websocket's reconnects and lose every later edit (the CLUSTER benchmark found that). A
 * cluster of its own: the failovers of cluster-failover.int.test.ts leave theirs reshaped.
 */
import { afterAll, beforeAll, it } from 'vitest'
import {
  connectClient,
  startTyping,
  type TestClient,
  uniquePrefix,
  useRedisCluster,
} from '@streambed/testing'
import {
  type ClusterDeployment,
  expectConverged,
  startClusterDeployment,
  typedAtLeast,
  typedMore,
} from './testing/cluster.js'

const rc = useRedisCluster()
let dep: ClusterDeployment

beforeAll(async () => {
  dep = await startClusterDeployment(rc.cluster, uniquePrefix('cl-typing'), { servers: 2 })
}, 600_000)
afterAll(async () => {
  await dep?.close()
})

it(
  'a master killed while clients keep typing: no edit is lost, all converge',
  { timeout: 300_000 },
  async () => {
    const [a, b] = dep.servers
    if (!a || !b) throw new Error('two servers expected')
    const doc = 'keeps-typing'
    const key = `${dep.env.REDIS_PREFIX}:v1:{${doc}}:s`
    const clients: TestClient[] = [a, b, a, b].map((n) =>
      connectClient(n.url, doc, { maxBackoffTime: 300 }),
    )
    await Promise.all(clients.map((c) => c.synced(30_000)))
    const typists = [startTyping(clients[0]!, 'k1', 20), startTyping(clients[1]!, 'k2', 20)]
    try {
      await typedAtLeast(typists, [0, 0], 150)
      const master = await rc.cluster.masterOf(key)
      await rc.cluster.killMaster(master)
      await rc.cluster.waitForFailover()
      await rc.cluster.restartNode(master)
      await typedMore(typists, 50)
    } finally {
      for (const t of typists) t.stop()
    }
    await expectConverged(clients, typists, a, doc)
    for (const c of clients) c.destroy()
  },
)
