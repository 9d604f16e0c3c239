import { spawnSync } from 'node:child_process'
import { parseServerConfig } from '@streambed/server'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { ensureHaproxy } from '@streambed/testing'
import { type CfgSection, haproxyTimeMs, parseHaproxyConfig } from './haproxy.js'
import { readRepoFile, repoPath } from './repo.js'

const CONFIG = 'infra/haproxy/haproxy.cfg'
const sections = parseHaproxyConfig(readRepoFile(CONFIG))
const section = (kind: string, name = ''): CfgSection => {
  const s = sections.find((x) => x.kind === kind && x.name === name)
  if (!s) throw new Error(`${CONFIG}: no "${kind} ${name}" section`)
  return s
}
/** The directives of `s` starting with `words`. */
const find = (s: CfgSection, ...words: string[]): string[][] =>
  s.directives.filter((d) => words.every((w, i) => d[i] === w))

interface ComposeService {
  image?: string
  volumes?: string[]
  ports?: string[]
  stop_grace_period?: string
}
const compose = parse(readRepoFile('docker-compose.yml')) as {
  services: Record<string, ComposeService>
}
const serverDefaults = parseServerConfig({ AUTH_MODE: 'none' })

describe(CONFIG, () => {
  it('is a valid HAProxy configuration (haproxy -c)', () => {
    const haproxy = ensureHaproxy()
    const r = spawnSync(haproxy, ['-c', '-f', repoPath(CONFIG)], { encoding: 'utf8' })
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0)
  })

  it('balances round robin, without stickiness, over the nodes that pass GET /readyz', () => {
    const backend = section('backend', 'nodes')
    expect(find(backend, 'balance')).toEqual([['balance', 'roundrobin']])
    expect(
      backend.directives.filter((d) => ['cookie', 'stick', 'hash-type'].includes(d[0]!)),
    ).toEqual([])
    expect(find(backend, 'option', 'httpchk')).toHaveLength(1)
    // uWebSockets.js does not answer HTTP/1.0, the version a bare `option httpchk` sends.
    const send = find(backend, 'http-check', 'send')
    expect(send).toHaveLength(1)
    expect(send[0]!.join(' ')).toMatch(/ meth GET uri \/readyz ver HTTP\/1\.1 hdr Host \S+/)
    expect(find(backend, 'http-check', 'expect')).toEqual([
      ['http-check', 'expect', 'status', '200'],
    ])
    const defaultServer = find(backend, 'default-server')
    expect(defaultServer).toHaveLength(1)
    expect(defaultServer[0]).toContain('check')
  })

  it('keeps idle WebSocket tunnels longer than a node lets a socket stay silent', () => {
    const defaults = section('defaults')
    const timeout = (name: string) => {
      const found = find(defaults, 'timeout', name)
      expect(found, `timeout ${name}`).toHaveLength(1)
      return haproxyTimeMs(found[0]![2]!)
    }
    expect(find(defaults, 'mode')).toEqual([['mode', 'http']])
    // A node pings a socket silent for WS_IDLE_TIMEOUT_S and sends keepalives every KEEPALIVE_MS.
    expect(timeout('tunnel')).toBeGreaterThan(serverDefaults.WS_IDLE_TIMEOUT_S * 1000)
    expect(timeout('tunnel')).toBeGreaterThan(serverDefaults.KEEPALIVE_MS)
    expect(timeout('check')).toBeGreaterThan(0)
    // A draining node refuses connections before its checks fail: retried on another node.
    expect(find(defaults, 'option', 'redispatch')).toHaveLength(1)
    expect(Number(find(defaults, 'retries')[0]?.[1])).toBeGreaterThanOrEqual(1)
  })

  it('fills its servers from the compose service `server` on the port the image listens on', () => {
    const template = find(section('backend', 'nodes'), 'server-template')
    expect(template).toHaveLength(1)
    const [, , , address] = template[0]!
    const [host, port] = address!.split(':')
    expect(compose.services[host!], `compose service ${host}`).toBeDefined()
    expect(readRepoFile('infra/Dockerfile')).toMatch(new RegExp(`\\bPORT=${port}\\b`))
    expect(template[0]).toContain('resolvers')
    expect(find(section('frontend', 'streambed'), 'bind')).toEqual([['bind', ':8080']])
  })
})

describe('docker-compose.yml', () => {
  it('runs HAProxy with infra/haproxy/haproxy.cfg as the load balancer', () => {
    const lb = compose.services.lb!
    expect(lb.image).toMatch(/^haproxy:\d/)
    expect(lb.volumes).toContain(
      './infra/haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro',
    )
    expect(lb.ports).toContain('8080:8080')
  })

  it('gives a stopping node time to drain before Docker kills it', () => {
    const grace = compose.services.server?.stop_grace_period
    expect(grace).toBeDefined()
    // SIGTERM: DRAIN_MS of socket closes, then the appends in flight; 10 s to spare.
    expect(haproxyTimeMs(grace!)).toBeGreaterThanOrEqual(serverDefaults.DRAIN_MS + 10_000)
  })
})
