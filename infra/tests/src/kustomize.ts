import { readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { type JsonObject, isObject } from './repo.js'

/**
 * A small kustomize renderer for the subset of kustomize that infra/k8s uses, so the manifests can
 * be checked as they will be applied (base + overlay) without a kustomize binary: `resources`
 * (files and directories), `patches` (strategic merge patch files), `images` and `namespace`.
 * Anything else in a kustomization.yaml is refused rather than ignored, and where `kubectl` is
 * installed the tests compare this rendering with `kubectl kustomize`.
 */

export interface K8sObject extends JsonObject {
  apiVersion: string
  kind: string
  metadata: JsonObject & { name: string; namespace?: string }
}

interface ImageRule {
  name: string
  newName?: string
  newTag?: string
  digest?: string
}

const SUPPORTED_KEYS = new Set([
  'apiVersion',
  'kind',
  'resources',
  'namespace',
  'images',
  'patches',
])

/** Kinds without a namespace among those a Streambed installation could contain. */
const CLUSTER_SCOPED = new Set([
  'Namespace',
  'ClusterRole',
  'ClusterRoleBinding',
  'CustomResourceDefinition',
  'PriorityClass',
  'StorageClass',
  'PersistentVolume',
  'ClusterTriggerAuthentication',
])

export const objectKey = (o: K8sObject): string =>
  `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`

const asK8sObject = (v: unknown, where: string): K8sObject => {
  if (
    !isObject(v) ||
    typeof v.apiVersion !== 'string' ||
    typeof v.kind !== 'string' ||
    !isObject(v.metadata) ||
    typeof v.metadata.name !== 'string'
  ) {
    throw new Error(`${where}: not a Kubernetes object with apiVersion, kind and metadata.name`)
  }
  return v as K8sObject
}

/** Every document of a YAML file (empty documents skipped); YAML errors throw. */
export const parseYamlDocuments = (text: string, where: string): unknown[] =>
  parseAllDocuments(text).flatMap((doc, i) => {
    if (doc.errors.length > 0) throw new Error(`${where} document ${i}: ${doc.errors[0]?.message}`)
    const value: unknown = doc.toJS()
    return value === null || value === undefined ? [] : [value]
  })

export const parseManifests = (text: string, where: string): K8sObject[] =>
  parseYamlDocuments(text, where).map((v, i) => asK8sObject(v, `${where} document ${i}`))

/** Core (`v1`) and `*.k8s.io` / dotless groups: kinds with a strategic-merge schema. */
const isBuiltIn = (apiVersion: string): boolean => {
  const group = apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : ''
  return group === '' || !group.includes('.') || group.endsWith('.k8s.io')
}

const isNameKeyed = (list: unknown[]): boolean =>
  list.every((item) => isObject(item) && typeof item.name === 'string')

/**
 * Strategic merge as kustomize does it for what the overlays patch: maps merge key by key (`null`
 * deletes), lists of built-in kinds merge by `name`, lists of custom resources are replaced (there
 * is no schema to merge them by). Lists keyed otherwise (ports, volumeMounts) are refused.
 */
export const strategicMerge = (
  base: unknown,
  patch: unknown,
  builtIn: boolean,
  path = '',
): unknown => {
  if (isObject(base) && isObject(patch)) {
    const out: JsonObject = { ...base }
    for (const [k, v] of Object.entries(patch)) {
      if (k.startsWith('$')) throw new Error(`${path}.${k}: patch directives are not supported`)
      if (v === null) delete out[k]
      else out[k] = k in base ? strategicMerge(base[k], v, builtIn, `${path}.${k}`) : v
    }
    return out
  }
  if (Array.isArray(base) && Array.isArray(patch)) {
    if (!builtIn) return patch
    if (!isNameKeyed(base) || !isNameKeyed(patch)) {
      throw new Error(`${path}: only lists keyed by name can be patched here`)
    }
    const out = [...(base as JsonObject[])]
    for (const item of patch as JsonObject[]) {
      const at = out.findIndex((b) => b.name === item.name)
      if (at < 0) out.push(item)
      else
        out[at] = strategicMerge(
          out[at],
          item,
          builtIn,
          `${path}[${String(item.name)}]`,
        ) as JsonObject
    }
    return out
  }
  return patch
}

const setImages = (node: unknown, rules: ImageRule[]): void => {
  if (Array.isArray(node)) {
    for (const item of node) setImages(item, rules)
    return
  }
  if (!isObject(node)) return
  for (const [key, value] of Object.entries(node)) {
    if ((key === 'containers' || key === 'initContainers') && Array.isArray(value)) {
      for (const c of value) {
        if (!isObject(c) || typeof c.image !== 'string') continue
        const name = c.image.split('@')[0]!.replace(/:[^:/]+$/, '')
        const rule = rules.find((r) => r.name === name)
        if (!rule) continue
        const newName = rule.newName ?? name
        const rest = c.image.slice(name.length)
        c.image = rule.digest
          ? `${newName}@${rule.digest}`
          : rule.newTag
            ? `${newName}:${rule.newTag}`
            : `${newName}${rest}`
      }
    }
    setImages(value, rules)
  }
}

const readKustomization = (dir: string): JsonObject => {
  const file = join(dir, 'kustomization.yaml')
  const [doc, ...more] = parseYamlDocuments(readFileSync(file, 'utf8'), file)
  if (!isObject(doc) || more.length > 0) throw new Error(`${file}: expected one mapping`)
  for (const key of Object.keys(doc)) {
    if (!SUPPORTED_KEYS.has(key))
      throw new Error(`${file}: "${key}" is not supported by this renderer`)
  }
  return doc
}

const stringList = (v: unknown, where: string): string[] => {
  if (v === undefined) return []
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    throw new Error(`${where}: expected a list of strings`)
  }
  return v
}

/** Renders the kustomization in `dir` to the objects `kubectl apply -k dir` would send. */
export const renderKustomization = (dir: string): K8sObject[] => {
  const k = readKustomization(dir)
  const where = join(dir, 'kustomization.yaml')
  let objects: K8sObject[] = []
  for (const r of stringList(k.resources, `${where} resources`)) {
    const path = resolve(dir, r)
    objects.push(
      ...(statSync(path).isDirectory()
        ? renderKustomization(path)
        : parseManifests(readFileSync(path, 'utf8'), path)),
    )
  }

  const patches: unknown[] = Array.isArray(k.patches) ? k.patches : []
  for (const p of patches) {
    if (!isObject(p) || typeof p.path !== 'string' || Object.keys(p).length !== 1) {
      throw new Error(`${where}: only patches of the form { path } are supported`)
    }
    const file = resolve(dir, p.path)
    for (const patch of parseManifests(readFileSync(file, 'utf8'), file)) {
      const matches = objects.filter(
        (o) =>
          o.apiVersion === patch.apiVersion &&
          o.kind === patch.kind &&
          o.metadata.name === patch.metadata.name,
      )
      if (matches.length !== 1) {
        throw new Error(
          `${file}: ${patch.kind}/${patch.metadata.name} matches ${matches.length} objects`,
        )
      }
      const target = matches[0]!
      const merged = strategicMerge(target, patch, isBuiltIn(target.apiVersion), patch.kind)
      objects = objects.map((o) => (o === target ? asK8sObject(merged, file) : o))
    }
  }

  if (k.images !== undefined) {
    if (!Array.isArray(k.images)) throw new Error(`${where}: images must be a list`)
    const rules = k.images.map((r): ImageRule => {
      if (!isObject(r) || typeof r.name !== 'string') throw new Error(`${where}: bad image rule`)
      return {
        name: r.name,
        ...(typeof r.newName === 'string' ? { newName: r.newName } : {}),
        ...(typeof r.newTag === 'string' ? { newTag: r.newTag } : {}),
        ...(typeof r.digest === 'string' ? { digest: r.digest } : {}),
      }
    })
    for (const o of objects) setImages(o, rules)
  }

  if (k.namespace !== undefined) {
    if (typeof k.namespace !== 'string') throw new Error(`${where}: namespace must be a string`)
    for (const o of objects) {
      if (!CLUSTER_SCOPED.has(o.kind)) o.metadata = { ...o.metadata, namespace: k.namespace }
    }
  }

  const seen = new Set<string>()
  for (const o of objects) {
    const key = objectKey(o)
    if (seen.has(key)) throw new Error(`${where}: ${key} is defined twice`)
    seen.add(key)
  }
  return objects
}
