import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { opsPaths } from '@streambed/common'
import { parseServerConfig } from '@streambed/server'
import { CONSUMER_GROUP } from '@streambed/streams'
import { parseWorkerConfig } from '@streambed/worker-app'
import { describe, expect, it } from 'vitest'
import {
  SECRET_VARS,
  configMaps,
  containerEnv,
  containerPort,
  deploymentRunning,
  expectedQueueStreams,
  hpas,
  pdbs,
  queueTriggerProblems,
  scaledObjects,
  services,
  triggerAuthentications,
  validateObject,
} from './k8s-checks.js'
import { type K8sObject, objectKey, parseManifests, renderKustomization } from './kustomize.js'
import { parseConfigTables } from './readme-config.js'
import { readRepoFile, repoPath } from './repo.js'

// What the tests check is the rendered result of each kustomization (what `kubectl apply -k` would
// send), not the files one by one: the overlay's patches change what matters (ConfigMap values,
// replica ranges, image). kustomize.ts renders the subset of kustomize used here; where kubectl
// is installed, the rendering is compared with `kubectl kustomize`.
const TREES = [
  'infra/k8s/base',
  ...readdirSync(repoPath('infra/k8s/overlays')).map((o) => `infra/k8s/overlays/${o}`),
]

const readme = parseConfigTables(readRepoFile('README.md'))
/** A server node's default DRAIN_MS: how long a draining node spreads its socket closes. */
const DEFAULT_DRAIN_MS = 10_000

const kubectlKustomize = (dir: string): K8sObject[] | null => {
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 })
  if (r.error || r.status !== 0) return null
  return parseManifests(r.stdout, `kubectl kustomize ${dir}`)
}
const hasKubectl =
  spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8', timeout: 30_000 }).status === 0

const byKey = (objects: K8sObject[]) =>
  Object.fromEntries(objects.map((o) => [objectKey(o), o] as const))

/** The processes' own parsers: what a pod would start with, or the CONFIG error it would exit on. */
const parsedConfigs = (objects: K8sObject[]) => {
  const server = deploymentRunning(objects, 'server')
  const worker = deploymentRunning(objects, 'worker')
  const serverEnv = containerEnv(objects, server.container, 'streambed-server-6b7f9c8d4-x2k4q')
  const workerEnv = containerEnv(objects, worker.container, 'streambed-worker-5d8c7b6f9-q7r2m')
  return {
    server,
    worker,
    serverEnv,
    workerEnv,
    serverConfig: parseServerConfig(serverEnv, { requireAuthMode: true }),
    workerConfig: parseWorkerConfig(workerEnv),
  }
}

describe.each(TREES)('%s', (tree) => {
  const objects = renderKustomization(repoPath(tree))

  it('renders the objects of a Streambed installation', () => {
    const kinds = objects.map((o) => o.kind).sort()
    for (const kind of [
      'ConfigMap',
      'Deployment',
      'HorizontalPodAutoscaler',
      'PodDisruptionBudget',
      'ScaledObject',
      'Service',
      'TriggerAuthentication',
    ]) {
      expect(kinds, kind).toContain(kind)
    }
  })

  it('fits the Kubernetes and KEDA schemas', () => {
    for (const o of objects) expect(() => validateObject(o), objectKey(o)).not.toThrow()
  })

  it.skipIf(!hasKubectl)('renders as kubectl kustomize does', () => {
    const theirs = kubectlKustomize(repoPath(tree))
    expect(theirs, 'kubectl kustomize failed').not.toBeNull()
    expect(byKey(objects)).toEqual(byKey(theirs!))
  })

  it('holds no secret: no Secret objects, secret variables only through secretKeyRef', () => {
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([])
    for (const cm of configMaps(objects)) {
      for (const key of Object.keys(cm.data ?? {})) {
        expect(SECRET_VARS.has(key), `${cm.metadata?.name} holds ${key}`).toBe(false)
      }
    }
    for (const command of ['server', 'worker'] as const) {
      const { container } = deploymentRunning(objects, command)
      for (const e of container.env ?? []) {
        if (!SECRET_VARS.has(e.name)) continue
        expect(e.value, `${command} ${e.name} is a literal`).toBeUndefined()
        expect(e.valueFrom?.secretKeyRef?.name, `${command} ${e.name}`).toBe('streambed-secrets')
      }
      const fromSecret = (container.env ?? []).filter((e) => e.valueFrom?.secretKeyRef)
      expect(fromSecret.map((e) => e.name)).toContain('REDIS_URL')
    }
    const { container } = deploymentRunning(objects, 'server')
    const jwt = (container.env ?? []).find((e) => e.name === 'AUTH_JWT_SECRET')
    expect(jwt?.valueFrom?.secretKeyRef?.optional ?? false).toBe(false)
  })

  it('sets only variables the README documents, in the table of the process that reads them', () => {
    const server = deploymentRunning(objects, 'server').container
    const worker = deploymentRunning(objects, 'worker').container
    const usedBy = (name: string) => ({
      server: (server.envFrom ?? []).some((s) => s.configMapRef?.name === name),
      worker: (worker.envFrom ?? []).some((s) => s.configMapRef?.name === name),
    })
    const allowed = (readers: { server: boolean; worker: boolean }) =>
      new Set([
        ...readme.shared,
        ...(readers.server && !readers.worker ? readme.server : []),
        ...(readers.worker && !readers.server ? readme.worker : []),
      ])
    for (const cm of configMaps(objects)) {
      const readers = usedBy(cm.metadata!.name!)
      expect(readers.server || readers.worker, `${cm.metadata?.name} is used`).toBe(true)
      const ok = allowed(readers)
      for (const key of Object.keys(cm.data ?? {})) {
        expect(ok.has(key), `${cm.metadata?.name}: ${key} is not in the README's table`).toBe(true)
      }
    }
    for (const [container, readers] of [
      [server, { server: true, worker: false }],
      [worker, { server: false, worker: true }],
    ] as const) {
      const ok = allowed(readers)
      for (const e of container.env ?? []) {
        expect(ok.has(e.name), `${container.name}: ${e.name} is not in the README`).toBe(true)
      }
    }
  })

  it('starts processes whose configuration parses (AUTH_MODE=jwt, a shared queue layout)', () => {
    const { serverConfig, workerConfig } = parsedConfigs(objects)
    expect(serverConfig.AUTH_MODE).toBe('jwt')
    expect(workerConfig.REDIS_PREFIX).toBe(serverConfig.REDIS_PREFIX)
    expect(workerConfig.QUEUE_SHARDS).toBe(serverConfig.QUEUE_SHARDS)
    expect(workerConfig.STORAGE).toBe(serverConfig.STORAGE)
    // Several pods on one local directory do not share it: fs storage needs one machine.
    expect(serverConfig.STORAGE).not.toBe('fs')
  })

  it('probes the paths and ports the processes serve', () => {
    const { server, worker, serverConfig, workerConfig } = parsedConfigs(objects)
    for (const [p, port] of [
      [server, serverConfig.PORT],
      [worker, workerConfig.PORT],
    ] as const) {
      const c = p.container
      expect(c.readinessProbe?.httpGet?.path).toBe('/readyz')
      expect(c.livenessProbe?.httpGet?.path).toBe('/healthz')
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
        if (!probe) continue
        expect(opsPaths).toContain(probe.httpGet?.path)
        expect(containerPort(c, probe.httpGet?.port)).toBe(port)
      }
      // Prometheus finds /metrics where the annotation says.
      const annotations = p.deployment.spec?.template.metadata?.annotations ?? {}
      expect(annotations['prometheus.io/path']).toBe('/metrics')
      const metricsPort =
        p === server && serverConfig.METRICS_PORT >= 0 ? serverConfig.METRICS_PORT : port
      expect(Number(annotations['prometheus.io/port'])).toBe(metricsPort)
      expect((c.ports ?? []).map((cp) => cp.containerPort)).toContain(metricsPort)
    }
  })

  it('lets a server node drain before it is killed', () => {
    const { server, serverConfig } = parsedConfigs(objects)
    const preStop = server.container.lifecycle?.preStop?.exec?.command ?? []
    expect(preStop[0]).toBe('sleep')
    const preStopS = Number(preStop[1])
    expect(preStopS).toBeGreaterThan(0)
    const drainMs = (serverConfig as Record<string, unknown>).DRAIN_MS
    const drainS = (typeof drainMs === 'number' ? drainMs : DEFAULT_DRAIN_MS) / 1000
    // preStop, then SIGTERM: DRAIN_MS of socket closes, then appends in flight; 10 s to spare.
    expect(server.pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(preStopS + drainS + 10)
  })

  it('runs as non-root on a read-only root filesystem, with resources set', () => {
    for (const command of ['server', 'worker'] as const) {
      const { pod, container } = deploymentRunning(objects, command)
      expect(pod.securityContext?.runAsNonRoot, command).toBe(true)
      expect(pod.securityContext?.runAsUser, command).not.toBe(0)
      expect(pod.securityContext?.seccompProfile?.type, command).toBe('RuntimeDefault')
      expect(pod.automountServiceAccountToken, command).toBe(false)
      const sc = container.securityContext
      expect(sc?.readOnlyRootFilesystem, command).toBe(true)
      expect(sc?.allowPrivilegeEscalation, command).toBe(false)
      expect(sc?.capabilities?.drop, command).toContain('ALL')
      expect(container.resources?.requests?.cpu, command).toBeDefined()
      expect(container.resources?.requests?.memory, command).toBeDefined()
      expect(container.resources?.limits?.memory, command).toBeDefined()
      // What the image writes (temporary files) goes to a volume, not the root filesystem.
      expect(
        (container.volumeMounts ?? []).map((m) => m.mountPath),
        command,
      ).toContain('/tmp')
    }
  })

  it('scales server nodes on CPU and keeps them available', () => {
    const { deployment } = deploymentRunning(objects, 'server')
    const name = deployment.metadata?.name
    // The HPA owns the replica count; a `replicas` here would reset it on every apply.
    expect(deployment.spec?.replicas).toBeUndefined()
    const hpa = hpas(objects).find((h) => h.spec?.scaleTargetRef.name === name)
    expect(hpa?.spec?.scaleTargetRef.kind).toBe('Deployment')
    expect(hpa?.spec?.metrics?.map((m) => m.resource?.name)).toContain('cpu')
    expect(hpa?.spec?.minReplicas).toBeGreaterThanOrEqual(2)
    expect(hpa?.spec?.maxReplicas).toBeGreaterThanOrEqual(hpa?.spec?.minReplicas ?? 0)
    const labels = deployment.spec?.template.metadata?.labels
    const pdb = pdbs(objects).find((p) =>
      Object.entries(p.spec?.selector?.matchLabels ?? {}).every(([k, v]) => labels?.[k] === v),
    )
    expect(pdb?.spec?.maxUnavailable).toBe(1)
    expect(Number(pdb?.spec?.maxUnavailable)).toBeLessThan(hpa?.spec?.minReplicas ?? 0)
  })

  it('has Services that select existing pods and ports', () => {
    const pods = ['server', 'worker'].map((c) =>
      deploymentRunning(objects, c as 'server' | 'worker'),
    )
    for (const svc of services(objects)) {
      const selector = svc.spec?.selector ?? {}
      expect(Object.keys(selector).length, svc.metadata?.name).toBeGreaterThan(0)
      const selected = pods.filter((p) =>
        Object.entries(selector).every(
          ([k, v]) => p.deployment.spec?.template.metadata?.labels?.[k] === v,
        ),
      )
      expect(selected.length, `${svc.metadata?.name} selects one Deployment`).toBe(1)
      for (const port of svc.spec?.ports ?? []) {
        expect(() => containerPort(selected[0]!.container, port.targetPort)).not.toThrow()
      }
    }
    expect(services(objects).some((s) => s.metadata?.name === 'streambed-server')).toBe(true)
  })

  it('scales workers with KEDA on the lag of every queue shard stream', () => {
    const { deployment } = deploymentRunning(objects, 'worker')
    const { serverConfig } = parsedConfigs(objects)
    expect(deployment.spec?.replicas).toBeUndefined()
    const [so, ...more] = scaledObjects(objects)
    expect(more).toEqual([])
    expect(so?.spec.scaleTargetRef.name).toBe(deployment.metadata?.name)
    // Workers also promote delayed tasks: with none running, nothing would ever be compacted.
    expect(so?.spec.minReplicaCount).toBeGreaterThanOrEqual(1)
    expect(so?.spec.maxReplicaCount).toBeGreaterThanOrEqual(so?.spec.minReplicaCount ?? 0)

    const { REDIS_PREFIX: prefix, QUEUE_SHARDS: shards } = serverConfig
    expect(queueTriggerProblems(so!, prefix, shards)).toEqual([])
    expect(so!.spec.triggers.map((t) => t.metadata.stream)).toEqual(
      expectedQueueStreams(prefix, shards),
    )
    expect(new Set(so!.spec.triggers.map((t) => t.metadata.consumerGroup))).toEqual(
      new Set([CONSUMER_GROUP]),
    )

    // KEDA authenticates with the same Secret the pods read REDIS_URL from.
    const auths = triggerAuthentications(objects)
    for (const t of so!.spec.triggers) {
      const auth = auths.find((a) => a.metadata?.name === t.authenticationRef?.name)
      expect(auth, t.name).toBeDefined()
      const refs = auth!.spec?.secretTargetRef ?? []
      expect(refs.map((r) => r.parameter).sort()).toEqual(['address', 'password'])
      expect(new Set(refs.map((r) => r.name))).toEqual(new Set(['streambed-secrets']))
    }
  })

  it('finds triggers that do not match the queue layout', () => {
    const { serverConfig } = parsedConfigs(objects)
    const so = scaledObjects(objects)[0]!
    const prefix = serverConfig.REDIS_PREFIX
    const shards = serverConfig.QUEUE_SHARDS
    expect(queueTriggerProblems(so, prefix, shards + 1).join('\n')).toContain(
      `missing ${prefix}:v1:{q${shards}}:tasks`,
    )
    expect(queueTriggerProblems(so, prefix, shards - 1).join('\n')).toMatch(/not queue streams/)
    expect(queueTriggerProblems(so, `${prefix}-other`, shards)).not.toEqual([])
  })
})

describe('infra/k8s/overlays/example', () => {
  const objects = renderKustomization(repoPath('infra/k8s/overlays/example'))

  it('pins the image and puts everything in its namespace', () => {
    for (const command of ['server', 'worker'] as const) {
      const image = deploymentRunning(objects, command).container.image ?? ''
      expect(image, command).toMatch(/^[^:@]+(?::[^:/@]+|@sha256:[0-9a-f]{64})$/)
      expect(image, command).not.toMatch(/:latest$/)
    }
    const ns = objects.find((o) => o.kind === 'Namespace')?.metadata.name
    expect(ns).toBeDefined()
    for (const o of objects) {
      if (o.kind !== 'Namespace') expect(o.metadata.namespace, objectKey(o)).toBe(ns)
    }
  })
})
