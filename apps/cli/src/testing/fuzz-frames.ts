/**
 * Test helper (not built): turns a fuzz plan (fuzz-plan.ts) into bytes. Deterministic: the same
 * plan gives the same frames (writers' Y.Docs get the plan's client ids; Yjs edits use no
 * randomness), so a failing fast-check seed reproduces.
 */
import * as Y from 'yjs'

/** Any shared type (Yjs' types are invariant in their event type). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Shared = Y.AbstractType<any>
import {
  encodeAwarenessMessage,
  encodeAwarenessUpdate,
  encodeQueryAwareness,
  encodeSyncStep1,
  encodeSyncStep2,
  encodeSyncUpdate,
} from '@streambed/protocol'
import type {
  AwarenessSpec,
  BaseFrame,
  CasePlan,
  Edit,
  FrameSpec,
  IdPick,
  Mutation,
  StructMutation,
  UpdateRef,
  Value,
} from './fuzz-plan.js'

/** Root type names (and kinds) every fuzz document uses. */
export const ROOTS = { t: 'text', m: 'map', a: 'array', x: 'xml' } as const

type Kind = 'text' | 'map' | 'array' | 'xml'

const kindOfEdit = (edit: Edit): Kind => edit.e.split('-')[0] as Kind

const isKind = (type: Shared, kind: Kind): boolean => {
  switch (kind) {
    case 'text':
      return type instanceof Y.Text
    case 'map':
      return type instanceof Y.Map && !(type instanceof Y.XmlHook)
    case 'array':
      return type instanceof Y.Array
    case 'xml':
      return type instanceof Y.XmlFragment
  }
}

/** Every shared type nested below `type` (visible ones), depth first. */
const nestedTypes = (type: Shared, out: Shared[] = []) => {
  const visit = (item: Y.Item) => {
    if (item.deleted || !(item.content instanceof Y.ContentType)) return
    const inner = item.content.type as Shared
    out.push(inner)
    nestedTypes(inner, out)
  }
  for (let item = type._start; item !== null; item = item.right) visit(item)
  for (const key of [...type._map.keys()].sort()) {
    const item = type._map.get(key)
    if (item) visit(item)
  }
  return out
}

const rootOf = (doc: Y.Doc, kind: Kind): Shared => {
  switch (kind) {
    case 'text':
      return doc.getText('t')
    case 'map':
      return doc.getMap('m')
    case 'array':
      return doc.getArray('a')
    case 'xml':
      return doc.getXmlFragment('x')
  }
}

const targetOf = (doc: Y.Doc, edit: Edit): Shared => {
  const kind = kindOfEdit(edit)
  const root = rootOf(doc, kind)
  if (edit.target === 0) return root
  const candidates = Object.values(ROOTS)
    .flatMap((k) => nestedTypes(rootOf(doc, k)))
    .filter((t) => isKind(t, kind))
  return candidates.length === 0 ? root : (candidates[edit.target % candidates.length] ?? root)
}

const toYValue = (value: Value): unknown => {
  switch (value.v) {
    case 'json':
      return value.json
    case 'bin':
      return value.bytes
    case 'map':
      return new Y.Map(value.entries.map(([k, v]) => [k, toYValue(v)] as [string, unknown]))
    case 'array':
      return Y.Array.from(value.items.map(toYValue) as Parameters<typeof Y.Array.from>[0])
    case 'text':
      return new Y.Text(value.s)
  }
}

/** Index and count of a range inside a sequence of `length` (empty when length is 0). */
const range = (length: number, at: number, n: number): [number, number] => {
  if (length === 0) return [0, 0]
  const i = at % length
  return [i, Math.min(n, length - i)]
}

/** Applies `edit` to `doc` (call inside a transaction to get one update). */
export const applyEdit = (doc: Y.Doc, edit: Edit): void => {
  const type = targetOf(doc, edit)
  switch (edit.e) {
    case 'text-insert': {
      const t = type as Y.Text
      return t.insert(edit.at % (t.length + 1), edit.s)
    }
    case 'text-delete': {
      const t = type as Y.Text
      const [i, n] = range(t.length, edit.at, edit.n)
      if (n > 0) t.delete(i, n)
      return
    }
    case 'text-format': {
      const t = type as Y.Text
      const [i, n] = range(t.length, edit.at, edit.n)
      if (n > 0) t.format(i, n, { [edit.key]: edit.value })
      return
    }
    case 'text-embed': {
      const t = type as Y.Text
      return t.insertEmbed(edit.at % (t.length + 1), { v: edit.json })
    }
    case 'map-set':
      return void (type as Y.Map<unknown>).set(edit.key, toYValue(edit.value))
    case 'map-delete':
      return (type as Y.Map<unknown>).delete(edit.key)
    case 'array-insert': {
      const a = type as Y.Array<unknown>
      return a.insert(edit.at % (a.length + 1), edit.values.map(toYValue))
    }
    case 'array-delete': {
      const a = type as Y.Array<unknown>
      const [i, n] = range(a.length, edit.at, edit.n)
      if (n > 0) a.delete(i, n)
      return
    }
    case 'xml-insert': {
      const x = type as Y.XmlFragment
      let node: Y.XmlElement | Y.XmlText
      if (edit.tag === null) node = new Y.XmlText(edit.text)
      else {
        node = new Y.XmlElement(edit.tag)
        node.insert(0, [new Y.XmlText(edit.text)])
      }
      return x.insert(edit.at % (x.length + 1), [node])
    }
    case 'xml-delete': {
      const x = type as Y.XmlFragment
      const [i, n] = range(x.length, edit.at, edit.n)
      if (n > 0) x.delete(i, n)
      return
    }
  }
}

/** A writer's updates: those it emitted, and its whole state and state vector after each step. */
export interface BuiltWriter {
  readonly client: number
  readonly incr: readonly Uint8Array[]
  readonly fulls: readonly Uint8Array[]
  readonly svs: readonly Uint8Array[]
}

/** Runs every writer of `plan`, in order (a writer merges only from writers before it). */
export const buildWriters = (plan: CasePlan): BuiltWriter[] => {
  const built: BuiltWriter[] = []
  for (const w of plan.writers) {
    const client = plan.clients[w.client % plan.clients.length] as number
    const doc = new Y.Doc({ gc: w.gc })
    doc.clientID = client
    const incr: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => incr.push(u))
    const fulls = [Y.encodeStateAsUpdate(doc)]
    const svs = [Y.encodeStateVector(doc)]
    for (const step of w.steps) {
      if (step.e === 'merge') {
        const src = built.length > 0 ? built[step.from % built.length] : undefined
        const update = src?.fulls[step.at % src.fulls.length]
        // Never its own client's structs: Yjs would then pick a new random client id.
        if (update && !Y.decodeStateVector(Y.encodeStateVectorFromUpdate(update)).has(client))
          Y.applyUpdate(doc, update)
      } else doc.transact(() => applyEdit(doc, step))
      fulls.push(Y.encodeStateAsUpdate(doc))
      svs.push(Y.encodeStateVector(doc))
    }
    doc.destroy()
    built.push({ client, incr, fulls, svs })
  }
  return built
}

export const resolveUpdate = (writers: readonly BuiltWriter[], ref: UpdateRef): Uint8Array => {
  if (ref.u === 'merge') {
    const parts = ref.parts.map((p) => resolveUpdate(writers, p))
    try {
      return Y.mergeUpdates(parts)
    } catch {
      // Yjs cannot merge some combinations of colliding ids: send the first part instead.
      return parts[0] as Uint8Array
    }
  }
  const w = writers[ref.w % writers.length] as BuiltWriter
  const last = w.fulls.length - 1
  switch (ref.u) {
    case 'incr':
      return w.incr.length === 0
        ? (w.fulls[last] as Uint8Array)
        : (w.incr[ref.i % w.incr.length] as Uint8Array)
    case 'full':
      return w.fulls[ref.at % w.fulls.length] as Uint8Array
    case 'diff': {
      const a = ref.from % w.fulls.length
      const b = ref.to % w.fulls.length
      return Y.diffUpdate(
        w.fulls[Math.max(a, b)] as Uint8Array,
        w.svs[Math.min(a, b)] as Uint8Array,
      )
    }
  }
}

type Struct = Y.Item | Y.GC | Y.Skip

/** A struct of a restructured update; `start` begins a section (client and first clock). */
interface Slot {
  struct: Struct
  start: { client: number; clock: number } | null
}

/**
 * `update` with its structs edited (see StructMutation) and written again in Yjs' v1 format: still
 * decodable, but with origins, parents, contents and ids no honest client would produce.
 */
export const restructure = (
  writers: readonly BuiltWriter[],
  clients: readonly number[],
  update: Uint8Array,
  mutations: readonly StructMutation[],
): Uint8Array => {
  const { structs, ds } = Y.decodeUpdate(update)
  const idOf = (p: IdPick) => Y.createID(clients[p.client % clients.length] as number, p.clock)
  const slots: Slot[] = []
  let end: Y.ID | null = null
  for (const struct of structs) {
    const continues =
      end !== null && end.client === struct.id.client && end.clock === struct.id.clock
    slots.push({
      struct,
      start: continues ? null : { client: struct.id.client, clock: struct.id.clock },
    })
    end = Y.createID(struct.id.client, struct.id.clock + struct.length)
  }
  const itemAt = (at: number): Y.Item | null => {
    const struct = slots[at % Math.max(1, slots.length)]?.struct
    return struct instanceof Y.Item ? struct : null
  }
  /** An item with neither origin needs a parent to be written. */
  const keepWritable = (item: Y.Item) => {
    if (item.origin === null && item.rightOrigin === null && item.parent === null)
      item.parent = 'a' as unknown as Y.Item['parent']
  }
  for (const m of mutations) {
    switch (m.sm) {
      case 'origin':
      case 'right': {
        const item = itemAt(m.at)
        if (!item) break
        const id = m.id ? idOf(m.id) : null
        if (m.sm === 'origin') item.origin = id
        else item.rightOrigin = id
        keepWritable(item)
        break
      }
      case 'parent': {
        const item = itemAt(m.at)
        if (!item) break
        item.origin = null
        item.rightOrigin = null
        item.parent = (typeof m.parent === 'string' ? m.parent : idOf(m.parent)) as Y.Item['parent']
        item.parentSub = m.sub
        break
      }
      case 'content': {
        const item = itemAt(m.at)
        const source = Y.decodeUpdate(resolveUpdate(writers, m.from)).structs.filter(
          (s): s is Y.Item => s instanceof Y.Item,
        )
        const from = source[m.fromAt % Math.max(1, source.length)]
        if (!item || !from) break
        item.content = from.content
        item.length = from.content.getLength()
        break
      }
      case 'section': {
        const slot = slots[m.at % Math.max(1, slots.length)]
        if (slot) slot.start = { client: idOf(m.id).client, clock: m.id.clock }
        break
      }
      case 'drop': {
        if (slots.length === 0) break
        const i = m.at % slots.length
        const [dropped] = slots.splice(i, 1)
        const next = slots[i]
        if (dropped?.start && next && !next.start) next.start = dropped.start
        break
      }
      case 'gc': {
        const slot = slots[m.at % Math.max(1, slots.length)]
        if (slot) slot.struct = new Y.GC(slot.struct.id, slot.struct.length)
        break
      }
      case 'skip': {
        const i = m.at % (slots.length + 1)
        const next = slots[i]
        const id = next?.struct.id ?? Y.createID(clients[0] as number, 0)
        slots.splice(i, 0, { struct: new Y.Skip(id, m.n), start: next?.start ?? null })
        if (next) next.start = null
        break
      }
      case 'delete': {
        const id = idOf(m.id)
        const items = ds.clients.get(id.client) ?? []
        items.push({ clock: id.clock, len: m.n })
        ds.clients.set(id.client, items)
        break
      }
    }
  }
  if (slots[0] && !slots[0].start) {
    const { id } = slots[0].struct
    slots[0].start = { client: id.client, clock: id.clock }
  }
  const sections: { client: number; clock: number; structs: Struct[] }[] = []
  for (const slot of slots) {
    if (slot.start) sections.push({ ...slot.start, structs: [] })
    sections[sections.length - 1]?.structs.push(slot.struct)
  }
  const encoder = new Y.UpdateEncoderV1()
  // In the v1 format every number below is a varuint, as writeDsClock writes it.
  encoder.writeDsClock(sections.length)
  for (const section of sections) {
    encoder.writeDsClock(section.structs.length)
    encoder.writeClient(section.client)
    encoder.writeDsClock(section.clock)
    for (const struct of section.structs) struct.write(encoder, 0)
  }
  encoder.writeDsClock(ds.clients.size)
  for (const [client, items] of ds.clients) {
    encoder.writeDsClock(client)
    encoder.writeDsClock(items.length)
    for (const item of items) {
      encoder.writeDsClock(item.clock)
      encoder.writeDsLen(item.len)
    }
  }
  return encoder.toUint8Array()
}

/** What a frame needs from the running case. */
export interface FrameContext {
  readonly writers: readonly BuiltWriter[]
  /** The case's Yjs client id pool. */
  readonly clients: readonly number[]
  /** Awareness ids attackers use as their own (shared by the case's attacker sockets). */
  readonly awarenessPool: readonly number[]
  /** Awareness client id and current clock of honest client `i`. */
  honest(i: number): { id: number; clock: number }
  /** Highest awareness clock the case sent per id (updated by `buildFrame`). */
  readonly sentClocks: Map<number, number>
  readonly maxMessageBytes: number
  readonly maxStateBytes: number
}

const awarenessEntries = (ctx: FrameContext, specs: readonly AwarenessSpec[]) =>
  specs.map((spec) => {
    let clientId: number
    let base: number
    if (spec.id.id === 'honest') {
      const h = ctx.honest(spec.id.i)
      clientId = h.id
      base = h.clock
    } else {
      clientId =
        spec.id.id === 'pool'
          ? (ctx.awarenessPool[spec.id.n % ctx.awarenessPool.length] as number)
          : spec.id.v
      base = ctx.sentClocks.get(clientId) ?? 0
    }
    const clock = spec.clock.c === 'lit' ? spec.clock.v : Math.max(0, base + spec.clock.d)
    if (clock > (ctx.sentClocks.get(clientId) ?? -1)) ctx.sentClocks.set(clientId, clock)
    const state =
      spec.state.s === 'json'
        ? JSON.stringify(spec.state.json)
        : spec.state.s === 'null'
          ? 'null'
          : spec.state.s === 'huge'
            ? JSON.stringify({ pad: 'x'.repeat(ctx.maxStateBytes + 100) })
            : spec.state.text
    return { clientId, clock, state }
  })

interface Built {
  readonly frame: Uint8Array
  /** The frame's payload (update, state vector, awareness update), or the frame itself. */
  readonly payload: Uint8Array
  /** Wraps a payload into a frame of the same kind. */
  readonly wrap: (payload: Uint8Array) => Uint8Array
}

const buildBase = (ctx: FrameContext, spec: BaseFrame): Built => {
  switch (spec.f) {
    case 'update': {
      const wrap = spec.step2 ? encodeSyncStep2 : encodeSyncUpdate
      const payload = resolveUpdate(ctx.writers, spec.ref)
      return { frame: wrap(payload), payload, wrap }
    }
    case 'step1': {
      const payload =
        spec.sv === 'empty'
          ? new Uint8Array([0])
          : Y.encodeStateVectorFromUpdate(resolveUpdate(ctx.writers, spec.sv))
      return { frame: encodeSyncStep1(payload), payload, wrap: encodeSyncStep1 }
    }
    case 'awareness': {
      const payload = encodeAwarenessUpdate(awarenessEntries(ctx, spec.entries))
      return { frame: encodeAwarenessMessage(payload), payload, wrap: encodeAwarenessMessage }
    }
    case 'query': {
      const frame = encodeQueryAwareness()
      return { frame, payload: frame, wrap: (p) => p }
    }
    case 'random':
      return { frame: spec.bytes, payload: spec.bytes, wrap: (p) => p }
    case 'big': {
      const size = spec.hard ? 2 * ctx.maxMessageBytes + 100 : ctx.maxMessageBytes + 100
      const payload = new Uint8Array(size).fill(7)
      return { frame: encodeSyncUpdate(payload), payload, wrap: encodeSyncUpdate }
    }
  }
}

const readVarUint = (bytes: Uint8Array, pos: number): [number, number] | null => {
  let value = 0
  let mult = 1
  for (let i = pos; i < bytes.length && i < pos + 8; i++) {
    const b = bytes[i] as number
    value += (b & 0x7f) * mult
    mult *= 128
    if (b < 0x80) return [value, i + 1]
  }
  return null
}

const varUint = (n: number): number[] => {
  const out: number[] = []
  while (n > 0x7f) {
    out.push(0x80 | (n % 128))
    n = Math.floor(n / 128)
  }
  out.push(n)
  return out
}

/** The offset and end of the payload length varint of a sync or awareness frame, or null. */
const lengthField = (frame: Uint8Array): [number, number] | null => {
  const type = readVarUint(frame, 0)
  if (!type) return null
  let pos = type[1]
  if (type[0] === 0) {
    const step = readVarUint(frame, pos)
    if (!step) return null
    pos = step[1]
  } else if (type[0] !== 1) return null
  const len = readVarUint(frame, pos)
  return len ? [pos, len[1]] : null
}

export const mutate = (input: Uint8Array, mutations: readonly Mutation[], frame: boolean) => {
  let bytes = [...input]
  for (const m of mutations) {
    const n = bytes.length
    switch (m.m) {
      case 'flip':
        if (n > 0) bytes[m.at % n] = (bytes[m.at % n] as number) ^ (1 << m.bit)
        break
      case 'set':
        if (n > 0) bytes[m.at % n] = m.byte
        break
      case 'truncate':
        bytes = bytes.slice(0, n === 0 ? 0 : m.at % n)
        break
      case 'insert':
        bytes.splice(m.at % (n + 1), 0, ...m.bytes)
        break
      case 'delete':
        if (n > 0) bytes.splice(m.at % n, m.n)
        break
      case 'len': {
        const field = frame ? lengthField(new Uint8Array(bytes)) : null
        if (!field) {
          if (n > 0) bytes[0] = (bytes[0] as number) ^ 1
          break
        }
        const [start, end] = field
        const old = readVarUint(new Uint8Array(bytes), start)?.[0] ?? 0
        bytes.splice(start, end - start, ...varUint(Math.max(0, old + m.delta)))
        break
      }
    }
  }
  return new Uint8Array(bytes)
}

export interface ConcreteFrame {
  /** The WebSocket frame. */
  readonly frame: Uint8Array
  /** The body an HTTP POST sends (the update, or whatever payload the frame carries). */
  readonly body: Uint8Array
}

/** The bytes of `spec` in the running case (awareness clocks depend on what was sent before). */
export const buildFrame = (ctx: FrameContext, spec: FrameSpec): ConcreteFrame => {
  if (spec.f === 'restructured') {
    const update = resolveUpdate(ctx.writers, spec.ref)
    const body = restructure(ctx.writers, ctx.clients, update, spec.mutations)
    return { frame: (spec.step2 ? encodeSyncStep2 : encodeSyncUpdate)(body), body }
  }
  if (spec.f !== 'mutated') {
    const b = buildBase(ctx, spec)
    return { frame: b.frame, body: b.payload }
  }
  const b = buildBase(ctx, spec.base)
  if (spec.payload) {
    const payload = mutate(b.payload, spec.mutations, false)
    return { frame: b.wrap(payload), body: payload }
  }
  const frame = mutate(b.frame, spec.mutations, true)
  return { frame, body: frame }
}

export const hex = (bytes: Uint8Array, max = 4096): string =>
  Buffer.from(bytes.subarray(0, max)).toString('hex') +
  (bytes.length > max ? `…(${bytes.length} bytes)` : '')
