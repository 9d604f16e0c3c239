import { ScaledObject, TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1'
import { CONSUMER_GROUP, createKeys } from '@streambed/streams'
import { Deployment } from 'kubernetes-models/apps/v1'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { ConfigMap, Namespace, Service, ServiceAccount } from 'kubernetes-models/v1'
import type { IContainer } from 'kubernetes-models/v1'
import type { K8sObject } from './kustomize.js'

/**
 * The models every kind in infra/k8s is validated against (kubernetes-models, and
 * @kubernetes-models/keda for KEDA's CRDs). A kind missing here fails the tests.
 */
type ModelClass = new (data: never) => { validate(): void }

const MODELS: Record<string, ModelClass> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Namespace': Namespace,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'keda.sh/v1alpha1/TriggerAuthentication': TriggerAuthentication,
}

/** Throws the model's validation error (naming the field) if `o` does not fit its schema. */
export const validateObject = (o: K8sObject): void => {
  const Model = MODELS[`${o.apiVersion}/${o.kind}`]
  if (!Model) throw new Error(`${o.apiVersion} ${o.kind}: no model to validate it against`)
  new Model(asModelData(o)).validate()
}

/**
 * Model constructors type their input as the finished object; a rendered manifest is checked by
 * validate() (validateObject, in the tests), not by the compiler.
 */
const asModelData = (o: K8sObject): never => o as never

const ofKind = (objects: K8sObject[], apiVersion: string, kind: string): never[] =>
  objects.filter((o) => o.apiVersion === apiVersion && o.kind === kind).map(asModelData)

export const deployments = (objects: K8sObject[]) =>
  ofKind(objects, 'apps/v1', 'Deployment').map((o) => new Deployment(o))
export const configMaps = (objects: K8sObject[]) =>
  ofKind(objects, 'v1', 'ConfigMap').map((o) => new ConfigMap(o))
export const services = (objects: K8sObject[]) =>
  ofKind(objects, 'v1', 'Service').map((o) => new Service(o))
export const pdbs = (objects: K8sObject[]) =>
  ofKind(objects, 'policy/v1', 'PodDisruptionBudget').map((o) => new PodDisruptionBudget(o))
export const hpas = (objects: K8sObject[]) =>
  ofKind(objects, 'autoscaling/v2', 'HorizontalPodAutoscaler').map(
    (o) => new HorizontalPodAutoscaler(o),
  )
export const scaledObjects = (objects: K8sObject[]) =>
  ofKind(objects, 'keda.sh/v1alpha1', 'ScaledObject').map((o) => new ScaledObject(o))
export const triggerAuthentications = (objects: K8sObject[]) =>
  ofKind(objects, 'keda.sh/v1alpha1', 'TriggerAuthentication').map(
    (o) => new TriggerAuthentication(o),
  )

/** The Deployment whose (only) container runs `streambed <command>`. */
export const deploymentRunning = (objects: K8sObject[], command: 'server' | 'worker') => {
  const found = deployments(objects).filter(
    (d) => d.spec?.template.spec?.containers[0]?.args?.[0] === command,
  )
  if (found.length !== 1) throw new Error(`expected one Deployment running "${command}"`)
  const deployment = found[0]!
  const pod = deployment.spec!.template.spec!
  if (pod.containers.length !== 1) throw new Error(`${command}: expected one container`)
  return { deployment, pod, container: pod.containers[0]! }
}

/** Env vars whose values are secrets: they must come from a Secret, never from a ConfigMap. */
export const SECRET_VARS = new Set([
  'REDIS_URL',
  'AUTH_JWT_SECRET',
  'DATABASE_URL',
  'S3_ACCESS_KEY_ID',
  'S3_SECRET_ACCESS_KEY',
  'METRICS_TOKEN',
])

/** Stand-ins for what the Secret holds, valid for the processes' config parsers. */
const SECRET_PLACEHOLDERS: Record<string, string> = {
  REDIS_URL: 'redis://:placeholder-password@redis.streambed.svc:6379',
  AUTH_JWT_SECRET: 'placeholder-jwt-secret-of-at-least-32-characters',
  DATABASE_URL: 'postgres://streambed:placeholder@postgres.streambed.svc:5432/streambed',
  S3_ACCESS_KEY_ID: 'PLACEHOLDERACCESSKEY',
  S3_SECRET_ACCESS_KEY: 'placeholder-secret-access-key',
  METRICS_TOKEN: 'placeholder-metrics-token',
}

/**
 * The environment a container starts with (ConfigMaps in `envFrom` order, then `env`), with the
 * Secret's values replaced by placeholders and `fieldRef`s by what the pod would have.
 */
export const containerEnv = (
  objects: K8sObject[],
  container: IContainer,
  podName: string,
): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const source of container.envFrom ?? []) {
    const name = source.configMapRef?.name
    if (!name) throw new Error(`${container.name}: only configMapRef is expected in envFrom`)
    const cm = configMaps(objects).find((c) => c.metadata?.name === name)
    if (!cm) {
      if (source.configMapRef?.optional) continue
      throw new Error(`${container.name}: envFrom ConfigMap ${name} does not exist`)
    }
    Object.assign(env, cm.data ?? {})
  }
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value
    else if (e.valueFrom?.secretKeyRef) env[e.name] = SECRET_PLACEHOLDERS[e.name] ?? 'placeholder'
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[e.name] = podName
    else throw new Error(`${container.name}: env ${e.name} has a source the tests do not know`)
  }
  return env
}

/** The container port a probe or Service `port` (a name or a number) refers to. */
export const containerPort = (container: IContainer, port: string | number | undefined) => {
  const p = (container.ports ?? []).find((cp) =>
    typeof port === 'number' ? cp.containerPort === port : cp.name === port,
  )
  if (!p) throw new Error(`${container.name}: no container port ${String(port)}`)
  return p.containerPort
}

/** The queue shard streams a ScaledObject must watch: `<prefix>:v1:{q<n>}:tasks`. */
export const expectedQueueStreams = (prefix: string, shards: number): string[] => {
  const keys = createKeys(prefix)
  return Array.from({ length: shards }, (_, n) => keys.queue(n))
}

const TRIGGER_TYPES = new Set(['redis-streams', 'redis-cluster-streams'])

/**
 * What is wrong with a ScaledObject's triggers for a queue of `shards` shards under `prefix`
 * (empty when nothing is): one Redis Streams trigger per shard stream, each on the workers'
 * consumer group and scaling on the group's lag.
 */
export const queueTriggerProblems = (
  so: ScaledObject,
  prefix: string,
  shards: number,
): string[] => {
  const problems: string[] = []
  const expected = expectedQueueStreams(prefix, shards)
  const streams: string[] = []
  for (const [i, t] of so.spec.triggers.entries()) {
    const at = `trigger ${i} (${t.name ?? t.type})`
    if (!TRIGGER_TYPES.has(t.type))
      problems.push(`${at}: type ${t.type} is not a Redis Streams scaler`)
    const stream = t.metadata.stream
    if (stream === undefined) problems.push(`${at}: no stream`)
    else streams.push(stream)
    if (t.metadata.consumerGroup !== CONSUMER_GROUP) {
      problems.push(`${at}: consumerGroup is ${t.metadata.consumerGroup}, not ${CONSUMER_GROUP}`)
    }
    const lag = t.metadata.lagCount
    if (lag === undefined || !/^[1-9][0-9]*$/.test(lag)) {
      problems.push(`${at}: lagCount must be a positive integer, got ${String(lag)}`)
    }
    if (t.metadata.pendingEntriesCount !== undefined || t.metadata.streamLength !== undefined) {
      problems.push(`${at}: scale on lagCount only (see worker-scaledobject.yaml)`)
    }
    if (!t.authenticationRef?.name) problems.push(`${at}: no authenticationRef`)
  }
  const missing = expected.filter((s) => !streams.includes(s))
  const extra = streams.filter((s) => !expected.includes(s))
  const duplicated = streams.filter((s, i) => streams.indexOf(s) !== i)
  if (missing.length > 0 || extra.length > 0 || duplicated.length > 0) {
    problems.push(
      `triggers must watch exactly the ${shards} queue streams of REDIS_PREFIX=${prefix} ` +
        `QUEUE_SHARDS=${shards}: ${expected.join(', ')}` +
        (missing.length > 0 ? `; missing ${missing.join(', ')}` : '') +
        (extra.length > 0 ? `; not queue streams: ${extra.join(', ')}` : '') +
        (duplicated.length > 0 ? `; twice: ${duplicated.join(', ')}` : ''),
    )
  }
  return problems
}
