/** vitest fixtures shared by the test files (beforeAll/afterAll wiring written once). */
import { Redis } from 'ioredis'
import * as Y from 'yjs'
import { afterAll, beforeAll, expect } from 'vitest'
import { AppError } from '@streambed/common'
import { startRedisServer, type RedisServer, type RedisServerOptions } from './redis-server.js'

export interface RedisFixture {
  /** The throwaway server (for restarts, kills). */
  readonly server: RedisServer
  readonly url: string
  /** A command client for assertions and setup. */
  readonly admin: Redis
  /** A second client, for blocking reads or subscriptions. */
  readonly blocking: Redis
}

/**
 * A throwaway Redis for the whole test file: started in beforeAll, stopped in afterAll. Fields
 * are usable inside tests and hooks (not at module level).
 */
export const useRedisServer = (opts: RedisServerOptions = {}): RedisFixture => {
  let server: RedisServer | undefined
  let admin: Redis | undefined
  let blocking: Redis | undefined
  const started = () => {
    if (!server) throw new Error('useRedisServer: used outside a test or hook')
    return server
  }
  beforeAll(async () => {
    server = await startRedisServer(opts)
  })
  afterAll(async () => {
    admin?.disconnect()
    blocking?.disconnect()
    await server?.close()
  })
  return {
    get server() {
      return started()
    },
    get url() {
      return started().url
    },
    get admin() {
      return (admin ??= new Redis(started().url))
    },
    get blocking() {
      return (blocking ??= new Redis(started().url))
    },
  }
}

/** The AppError `fn` throws; fails the test when it throws nothing or something else. */
export const appErrorOf = (fn: () => unknown): AppError => {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(AppError)
    return err as AppError
  }
  throw new Error('expected an AppError, nothing was thrown')
}

/** The one Yjs update that `edit` produces on a fresh document. */
export const captureUpdate = (edit: (doc: Y.Doc) => void): Uint8Array => {
  const doc = new Y.Doc()
  const updates: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => updates.push(u))
  doc.transact(() => edit(doc))
  doc.destroy()
  if (updates.length !== 1)
    throw new Error(`the edit produced ${updates.length} updates, expected 1`)
  return updates[0] as Uint8Array
}
