import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { committedConfigPath, testConfig } from './haproxy.js'

const committed = readFileSync(committedConfigPath, 'utf8')
const checks = { interMs: 200, fastinterMs: 100, downinterMs: 150, fall: 2, rise: 3 }

describe('testConfig', () => {
  const config = testConfig(committed, { port: 1001, statsPort: 1002, backends: [7, 8], checks })
  const lines = config.split('\n').map((l) => l.trim())

  it('binds the frontends to loopback and lists the backends as fixed servers', () => {
    expect(lines).toContain('bind 127.0.0.1:1001')
    expect(lines).toContain('bind 127.0.0.1:1002')
    expect(lines.filter((l) => l.startsWith('server '))).toEqual([
      'server node1 127.0.0.1:7',
      'server node2 127.0.0.1:8',
    ])
    expect(config).not.toMatch(/server-template|resolvers|127\.0\.0\.11/)
  })

  it('replaces the check timings and keeps everything else as committed', () => {
    const defaultServer = lines.find((l) => l.startsWith('default-server'))
    expect(defaultServer).toBe(
      'default-server check inter 200ms fastinter 100ms downinter 150ms fall 2 rise 3',
    )
    // Every other directive is the committed one, in the same order.
    const CHANGED =
      /^(bind|default-server|server|server-template|resolvers|nameserver|hold|accepted_payload_size)\b/
    const directives = (text: string) =>
      text
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '' && !l.startsWith('#') && !CHANGED.test(l))
    expect(directives(config)).toEqual(directives(committed))
    for (const l of [
      'balance roundrobin',
      'http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host streambed',
      'timeout tunnel 120s',
    ])
      expect(lines).toContain(l)
  })

  it('fails loudly when the committed file changes shape', () => {
    const opts = { port: 1, statsPort: 2, backends: [3], checks }
    expect(() => testConfig(committed.replace(/server-template.*\n/, ''), opts)).toThrow(
      /expected one "server-template" in "backend nodes"/,
    )
    expect(() => testConfig(committed.replace(/ fall \d+/, ''), opts)).toThrow(/no "fall"/)
  })
})
