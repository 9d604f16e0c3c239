/**
 * Test helper (not built): `streambed server | worker` as a child process on the address the test
 * chooses (a load balancer's server list names fixed ports), waiting as long as the start takes.
 */
import type { ManagedProcess } from '@streambed/testing'
import { spawnNode } from './nodes.js'

/**
 * Starts `streambed <command>` (spawnNode: TypeScript source through tsx) with `env` (REDIS_URL,
 * REDIS_PREFIX, PORT and STORAGE_DIR given by the test) and resolves once it logged that it
 * listens. Loading the sources is most of a start and takes many seconds on shared, busy cores:
 * `startTimeoutMs` allows for that. A process that did not start in time is killed, and so is one
 * still running when the test process exits.
 */
export const startCliProcess = async (
  command: 'server' | 'worker',
  env: Record<string, string>,
  startTimeoutMs = 60_000,
): Promise<ManagedProcess> =>
  (await spawnNode(env, { command, startTimeoutMs, killOnExit: true })).proc
