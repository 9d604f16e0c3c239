/**
 * A master killed while clients type with REDIS_WAIT_REPLICAS=1 (see testing/failover-scenario.ts):
 * nothing another client saw may be lost, even from a writer that never comes back. A cluster of
 * its own: a second failover in one cluster left the next restart unstable on a loaded machine.
 */
import { afterAll, beforeAll, it } from 'vitest'
import { uniquePrefix, useRedisCluster } from '@streambed/testing'
import { type ClusterDeployment, startClusterDeployment } from './testing/cluster.js'
import { masterKilledWhileTyping } from './testing/failover-scenario.js'

const rc = useRedisCluster()
let waiting: ClusterDeployment

beforeAll(async () => {
  waiting = await startClusterDeployment(rc.cluster, uniquePrefix('cl-wait-failover'), {
    servers: 2,
    env: { REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '1000' },
  })
}, 600_000)
afterAll(async () => {
  await waiting?.close()
})

it(
  'a master killed while clients type, REDIS_WAIT_REPLICAS=1: the replica takes over and every client converges, nothing seen is lost',
  { timeout: 300_000 },
  () => masterKilledWhileTyping(rc.cluster, waiting, 'wait'),
)
