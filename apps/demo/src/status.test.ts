import { describe, expect, it } from 'vitest'
import { CloseCode } from '@streambed/common'
import {
  type Badge,
  badgeAfter,
  closeMeanings,
  describeClose,
  initialBadge,
  type ProviderEvent,
} from './status.js'

const run = (...events: ProviderEvent[]): Badge => events.reduce(badgeAfter, initialBadge)

describe('connection badge', () => {
  it('knows every close code a node sends', () => {
    for (const code of Object.values(CloseCode)) expect(closeMeanings[code]).toBeTruthy()
  })

  it('describes a close by code, adding the reason when it says more', () => {
    expect(describeClose(4405)).toBe('4405 document deleted')
    expect(describeClose(4404, 'must be 1-200 characters')).toBe(
      '4404 bad document name (must be 1-200 characters)',
    )
    expect(describeClose(4999, 'custom')).toBe('4999 closed (custom)')
    expect(describeClose(null)).toBe('no answer from the node')
  })

  it('goes connecting → connected → synced', () => {
    expect(run({ kind: 'status', status: 'connecting' })).toMatchObject({
      state: 'connecting',
      text: 'connecting…',
    })
    expect(run({ kind: 'status', status: 'connected' }).state).toBe('connected')
    expect(
      run({ kind: 'status', status: 'connected' }, { kind: 'sync', synced: true }),
    ).toMatchObject({ state: 'synced', text: 'connected · synced' })
  })

  it('shows a lost connection while it reconnects, and forgets it once synced', () => {
    const lost = run(
      { kind: 'status', status: 'connected' },
      { kind: 'sync', synced: true },
      { kind: 'close', code: 1006, reason: '' },
      { kind: 'status', status: 'disconnected' },
      { kind: 'sync', synced: false },
    )
    expect(lost).toMatchObject({
      state: 'disconnected',
      text: 'disconnected: 1006 connection lost',
    })
    const retrying = badgeAfter(lost, { kind: 'status', status: 'connecting' })
    expect(retrying.text).toBe('reconnecting… (1006 connection lost)')
    const back = [
      { kind: 'status', status: 'connected' },
      { kind: 'sync', synced: true },
    ] as const
    expect(back.reduce(badgeAfter, retrying)).toEqual({
      state: 'synced',
      text: 'connected · synced',
      lastClose: null,
    })
  })

  it('stays stopped after a close the client will not retry', () => {
    const stopped = run(
      { kind: 'status', status: 'connected' },
      { kind: 'close', code: 4401, reason: '' },
      { kind: 'status', status: 'disconnected' },
      { kind: 'stopped', code: 4401, reason: '' },
      { kind: 'status', status: 'connecting' },
    )
    expect(stopped).toMatchObject({
      state: 'stopped',
      text: 'disconnected: 4401 unauthorized: token missing or invalid',
    })
  })
})
