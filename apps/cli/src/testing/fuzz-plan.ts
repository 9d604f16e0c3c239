/**
 * Test helper (not built): what one fuzz case does, as plain data that fast-check generates and
 * shrinks. `fuzz-frames.ts` turns a plan into bytes; `fuzz.int.test.ts` runs it against nodes.
 *
 * A case has a pool of 1-3 Yjs client ids shared by several "writer" documents: writers with the
 * same client id make different edits under the same (client, clock) ids, which is how an attacker
 * reuses ids with other content. Frames carry writers' updates (incremental, full states, diffs
 * against an earlier state: partial overlaps, merges of several), awareness entries, raw bytes, and
 * mutations of all of these.
 */
import fc from 'fast-check'

/** A value stored in a map or array: JSON, or a nested shared type. */
export type Value =
  | { readonly v: 'json'; readonly json: unknown }
  | { readonly v: 'bin'; readonly bytes: Uint8Array }
  | { readonly v: 'map'; readonly entries: readonly (readonly [string, Value])[] }
  | { readonly v: 'array'; readonly items: readonly Value[] }
  | { readonly v: 'text'; readonly s: string }

/**
 * One edit in one transaction. `target` 0 edits the root type of the edit's kind (text `t`, map
 * `m`, array `a`, xml fragment `x`); k > 0 the k-th nested type of that kind (modulo their count).
 * Positions are taken modulo the type's length.
 */
export type Edit =
  | { readonly e: 'text-insert'; readonly target: number; readonly at: number; readonly s: string }
  | { readonly e: 'text-delete'; readonly target: number; readonly at: number; readonly n: number }
  | {
      readonly e: 'text-format'
      readonly target: number
      readonly at: number
      readonly n: number
      readonly key: string
      readonly value: unknown
    }
  | {
      readonly e: 'text-embed'
      readonly target: number
      readonly at: number
      readonly json: unknown
    }
  | { readonly e: 'map-set'; readonly target: number; readonly key: string; readonly value: Value }
  | { readonly e: 'map-delete'; readonly target: number; readonly key: string }
  | {
      readonly e: 'array-insert'
      readonly target: number
      readonly at: number
      readonly values: readonly Value[]
    }
  | { readonly e: 'array-delete'; readonly target: number; readonly at: number; readonly n: number }
  | {
      readonly e: 'xml-insert'
      readonly target: number
      readonly at: number
      /** null: an XmlText. */
      readonly tag: string | null
      readonly text: string
    }
  | { readonly e: 'xml-delete'; readonly target: number; readonly at: number; readonly n: number }

/** A writer step: an edit, or applying another writer's state as of its step `at`. */
export type WriterStep = Edit | { readonly e: 'merge'; readonly from: number; readonly at: number }

export interface WriterPlan {
  /** Index into the case's client id pool. */
  readonly client: number
  readonly gc: boolean
  readonly steps: readonly WriterStep[]
}

/** Which update of the writers a frame carries. */
export type UpdateRef =
  /** The i-th update the writer emitted (its own edits, or what it merged from another). */
  | { readonly u: 'incr'; readonly w: number; readonly i: number }
  /** The writer's whole state after step `at` (0: before any step). */
  | { readonly u: 'full'; readonly w: number; readonly at: number }
  /** The state after the later of `from`/`to` without what the earlier one had. */
  | { readonly u: 'diff'; readonly w: number; readonly from: number; readonly to: number }
  /** Y.mergeUpdates of several (ids may collide with other content). */
  | { readonly u: 'merge'; readonly parts: readonly UpdateRef[] }

export type IdSpec =
  /** An id of the case's awareness pool (shared by every attacker socket of the case). */
  | { readonly id: 'pool'; readonly n: number }
  /** The awareness client id of honest client 0 or 1. */
  | { readonly id: 'honest'; readonly i: number }
  | { readonly id: 'lit'; readonly v: number }

export type ClockSpec =
  /** Relative to the clock last seen for the id (honest: its current clock; pool: last sent). */
  { readonly c: 'rel'; readonly d: number } | { readonly c: 'lit'; readonly v: number }

export type StateSpec =
  | { readonly s: 'json'; readonly json: unknown }
  /** The removal of the client ("null"). */
  | { readonly s: 'null' }
  /** A state above AWARENESS_MAX_STATE_BYTES. */
  | { readonly s: 'huge' }
  /** Any text: mostly not JSON. */
  | { readonly s: 'raw'; readonly text: string }

export interface AwarenessSpec {
  readonly id: IdSpec
  readonly clock: ClockSpec
  readonly state: StateSpec
}

export type Mutation =
  | { readonly m: 'flip'; readonly at: number; readonly bit: number }
  | { readonly m: 'set'; readonly at: number; readonly byte: number }
  | { readonly m: 'truncate'; readonly at: number }
  | { readonly m: 'insert'; readonly at: number; readonly bytes: Uint8Array }
  | { readonly m: 'delete'; readonly at: number; readonly n: number }
  /** Rewrites the frame's payload length varint (frame mutations only) by `delta`. */
  | { readonly m: 'len'; readonly delta: number }

/** A client id of the case's pool (by index) and a clock. */
export interface IdPick {
  readonly client: number
  readonly clock: number
}

/**
 * An edit of an update's structs that keeps it decodable (the node accepts it as a Yjs update):
 * origins and parents pointing elsewhere, other content, structs moved to other ids. Indexes
 * (`at`) are taken modulo the number of structs.
 */
export type StructMutation =
  | { readonly sm: 'origin'; readonly at: number; readonly id: IdPick | null }
  | { readonly sm: 'right'; readonly at: number; readonly id: IdPick | null }
  | {
      readonly sm: 'parent'
      readonly at: number
      readonly parent: string | IdPick
      readonly sub: string | null
    }
  /** The content of struct `fromAt` of another update. */
  | {
      readonly sm: 'content'
      readonly at: number
      readonly from: UpdateRef
      readonly fromAt: number
    }
  /** Structs from `at` on start a new section: another client and first clock. */
  | { readonly sm: 'section'; readonly at: number; readonly id: IdPick }
  | { readonly sm: 'drop'; readonly at: number }
  | { readonly sm: 'gc'; readonly at: number }
  | { readonly sm: 'skip'; readonly at: number; readonly n: number }
  | { readonly sm: 'delete'; readonly id: IdPick; readonly n: number }

export type BaseFrame =
  | { readonly f: 'update'; readonly ref: UpdateRef; readonly step2: boolean }
  | { readonly f: 'step1'; readonly sv: 'empty' | UpdateRef }
  | { readonly f: 'awareness'; readonly entries: readonly AwarenessSpec[] }
  | { readonly f: 'query' }
  | { readonly f: 'random'; readonly bytes: Uint8Array }
  /** A frame above WS_MAX_MESSAGE_BYTES (soft: 4413) or above twice it (hard: dropped). */
  | { readonly f: 'big'; readonly hard: boolean }

export type FrameSpec =
  | BaseFrame
  | {
      readonly f: 'restructured'
      readonly ref: UpdateRef
      readonly step2: boolean
      readonly mutations: readonly StructMutation[]
    }
  | {
      readonly f: 'mutated'
      readonly base: BaseFrame
      /** true: mutate the payload and re-encode a frame around it; false: the frame's bytes. */
      readonly payload: boolean
      readonly mutations: readonly Mutation[]
    }

export type Step =
  /** Send a frame on attacker socket `sock` (opened to node `node` if it is not open). */
  | { readonly s: 'send'; readonly sock: number; readonly node: number; readonly frame: FrameSpec }
  /** POST the frame's payload (an update, or whatever bytes) to /docs/<doc> of `node`. */
  | { readonly s: 'post'; readonly node: number; readonly frame: FrameSpec }
  /** An honest client edits. */
  | { readonly s: 'honest'; readonly who: number; readonly edit: Edit }
  | { readonly s: 'close'; readonly sock: number }
  /** Let the event loop run (interleavings); `ms` 0 is one macrotask. */
  | { readonly s: 'tick'; readonly ms: number }

export interface CasePlan {
  /** Yjs client ids the writers use. */
  readonly clients: readonly number[]
  readonly writers: readonly WriterPlan[]
  readonly steps: readonly Step[]
}

const SOCKETS = 3

const clientIdArb = fc.oneof(
  { arbitrary: fc.integer({ min: 1, max: 6 }), weight: 8 },
  {
    arbitrary: fc.constantFrom(0, 2 ** 31 - 1, 2 ** 32 - 1, 2 ** 32 + 7, 2 ** 53 - 1),
    weight: 1,
  },
)

const keyArb = fc.constantFrom('k', 'l', 'x', '', '__proto__', 'ключ')
const shortText = fc.string({ maxLength: 6, unit: 'grapheme' })
const jsonArb = fc.jsonValue({ maxDepth: 2 })

const valueArb: fc.Arbitrary<Value> = fc.letrec<{ value: Value }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { arbitrary: fc.record({ v: fc.constant('json' as const), json: jsonArb }), weight: 6 },
    {
      arbitrary: fc.record({
        v: fc.constant('bin' as const),
        bytes: fc.uint8Array({ maxLength: 4 }),
      }),
      weight: 1,
    },
    {
      arbitrary: fc.record({
        v: fc.constant('map' as const),
        entries: fc.array(fc.tuple(keyArb, tie('value')), { maxLength: 2 }),
      }),
      weight: 2,
    },
    {
      arbitrary: fc.record({
        v: fc.constant('array' as const),
        items: fc.array(tie('value'), { maxLength: 2 }),
      }),
      weight: 2,
    },
    { arbitrary: fc.record({ v: fc.constant('text' as const), s: shortText }), weight: 2 },
  ),
})).value

const target = fc.oneof({ arbitrary: fc.constant(0), weight: 3 }, fc.integer({ min: 1, max: 3 }))
const pos = fc.nat({ max: 40 })
const len = fc.integer({ min: 1, max: 5 })

export const editArb: fc.Arbitrary<Edit> = fc.oneof(
  {
    arbitrary: fc.record({ e: fc.constant('text-insert' as const), target, at: pos, s: shortText }),
    weight: 4,
  },
  {
    arbitrary: fc.record({ e: fc.constant('text-delete' as const), target, at: pos, n: len }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      e: fc.constant('text-format' as const),
      target,
      at: pos,
      n: len,
      key: fc.constantFrom('bold', 'i'),
      value: fc.constantFrom(true, null, 'x', 2),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({ e: fc.constant('text-embed' as const), target, at: pos, json: jsonArb }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      e: fc.constant('map-set' as const),
      target,
      key: keyArb,
      value: valueArb,
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({ e: fc.constant('map-delete' as const), target, key: keyArb }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      e: fc.constant('array-insert' as const),
      target,
      at: pos,
      values: fc.array(valueArb, { minLength: 1, maxLength: 3 }),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({ e: fc.constant('array-delete' as const), target, at: pos, n: len }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      e: fc.constant('xml-insert' as const),
      target,
      at: pos,
      tag: fc.option(fc.constantFrom('p', 'h1', 'li'), { nil: null }),
      text: shortText,
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({ e: fc.constant('xml-delete' as const), target, at: pos, n: len }),
    weight: 1,
  },
)

const writerStepArb: fc.Arbitrary<WriterStep> = fc.oneof(
  { arbitrary: editArb, weight: 6 },
  {
    arbitrary: fc.record({ e: fc.constant('merge' as const), from: fc.nat(), at: fc.nat() }),
    weight: 1,
  },
)

const writerArb = (clients: number): fc.Arbitrary<WriterPlan> =>
  fc.record({
    client: fc.nat({ max: clients - 1 }),
    gc: fc.boolean(),
    steps: fc.array(writerStepArb, { minLength: 1, maxLength: 6 }),
  })

const nat = fc.nat({ max: 1000 })
const leafRef: fc.Arbitrary<UpdateRef> = fc.oneof(
  { arbitrary: fc.record({ u: fc.constant('incr' as const), w: nat, i: nat }), weight: 3 },
  { arbitrary: fc.record({ u: fc.constant('full' as const), w: nat, at: nat }), weight: 3 },
  {
    arbitrary: fc.record({ u: fc.constant('diff' as const), w: nat, from: nat, to: nat }),
    weight: 2,
  },
)
const updateRefArb: fc.Arbitrary<UpdateRef> = fc.oneof(
  { arbitrary: leafRef, weight: 8 },
  {
    arbitrary: fc.record({
      u: fc.constant('merge' as const),
      parts: fc.array(leafRef, { minLength: 2, maxLength: 3 }),
    }),
    weight: 1,
  },
)

const awarenessEntryArb: fc.Arbitrary<AwarenessSpec> = fc.record({
  id: fc.oneof(
    {
      arbitrary: fc.record({ id: fc.constant('pool' as const), n: fc.nat({ max: 3 }) }),
      weight: 4,
    },
    {
      arbitrary: fc.record({ id: fc.constant('honest' as const), i: fc.nat({ max: 1 }) }),
      weight: 3,
    },
    {
      arbitrary: fc.record({
        id: fc.constant('lit' as const),
        v: fc.oneof(fc.nat({ max: 20 }), fc.constantFrom(2 ** 32 - 1, 2 ** 53 - 1)),
      }),
      weight: 1,
    },
  ),
  clock: fc.oneof(
    {
      arbitrary: fc.record({ c: fc.constant('rel' as const), d: fc.integer({ min: -2, max: 3 }) }),
      weight: 6,
    },
    {
      arbitrary: fc.record({
        c: fc.constant('lit' as const),
        v: fc.constantFrom(0, 1, 2 ** 31, 2 ** 53 - 1),
      }),
      weight: 1,
    },
  ),
  state: fc.oneof(
    { arbitrary: fc.record({ s: fc.constant('json' as const), json: jsonArb }), weight: 6 },
    { arbitrary: fc.record({ s: fc.constant('null' as const) }), weight: 3 },
    { arbitrary: fc.record({ s: fc.constant('huge' as const) }), weight: 1 },
    {
      arbitrary: fc.record({
        s: fc.constant('raw' as const),
        text: fc.oneof(
          fc.string({ maxLength: 8 }),
          fc.constantFrom('{', ' null', '[1,', '"\\ud800"'),
        ),
      }),
      weight: 1,
    },
  ),
})

const baseFrameArb: fc.Arbitrary<BaseFrame> = fc.oneof(
  {
    arbitrary: fc.record({
      f: fc.constant('update' as const),
      ref: updateRefArb,
      step2: fc.boolean(),
    }),
    weight: 10,
  },
  {
    arbitrary: fc.record({
      f: fc.constant('awareness' as const),
      entries: fc.oneof(
        { arbitrary: fc.array(awarenessEntryArb, { minLength: 1, maxLength: 3 }), weight: 5 },
        // Many ids at once: above AWARENESS_MAX_CLIENTS_PER_SOCKET.
        { arbitrary: fc.array(awarenessEntryArb, { minLength: 9, maxLength: 12 }), weight: 1 },
      ),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      f: fc.constant('step1' as const),
      sv: fc.oneof(fc.constant('empty' as const), leafRef),
    }),
    weight: 1,
  },
  { arbitrary: fc.record({ f: fc.constant('query' as const) }), weight: 1 },
  {
    arbitrary: fc.record({
      f: fc.constant('random' as const),
      bytes: fc.oneof(
        fc.uint8Array({ maxLength: 40 }),
        // Plausible headers (sync/awareness type and step) before random bytes.
        fc
          .tuple(fc.nat({ max: 3 }), fc.nat({ max: 3 }), fc.uint8Array({ maxLength: 40 }))
          .map(([t, s, rest]) => new Uint8Array([t, s, ...rest])),
      ),
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ f: fc.constant('big' as const), hard: fc.boolean() }), weight: 1 },
)

const at = fc.nat({ max: 10_000 })
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  {
    arbitrary: fc.record({ m: fc.constant('flip' as const), at, bit: fc.nat({ max: 7 }) }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      m: fc.constant('set' as const),
      at,
      byte: fc.constantFrom(0, 1, 2, 0x7f, 0x80, 0xff),
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ m: fc.constant('truncate' as const), at }), weight: 1 },
  {
    arbitrary: fc.record({
      m: fc.constant('insert' as const),
      at,
      bytes: fc.uint8Array({ minLength: 1, maxLength: 3 }),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      m: fc.constant('delete' as const),
      at,
      n: fc.integer({ min: 1, max: 3 }),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      m: fc.constant('len' as const),
      delta: fc.constantFrom(-3, -1, 1, 2, 1000, 2 ** 31),
    }),
    weight: 1,
  },
)

const idPickArb: fc.Arbitrary<IdPick> = fc.record({
  client: fc.nat({ max: 3 }),
  clock: fc.oneof({ arbitrary: fc.nat({ max: 12 }), weight: 9 }, fc.constant(2 ** 31)),
})
const structAt = fc.nat({ max: 1000 })
const structMutationArb: fc.Arbitrary<StructMutation> = fc.oneof(
  {
    arbitrary: fc.record({
      sm: fc.constant('origin' as const),
      at: structAt,
      id: fc.option(idPickArb, { nil: null }),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      sm: fc.constant('right' as const),
      at: structAt,
      id: fc.option(idPickArb, { nil: null }),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      sm: fc.constant('parent' as const),
      at: structAt,
      parent: fc.oneof(fc.constantFrom('t', 'm', 'a', 'x', 'zz'), idPickArb),
      sub: fc.option(fc.constantFrom('k', 'l', 'x'), { nil: null }),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      sm: fc.constant('content' as const),
      at: structAt,
      from: leafRef,
      fromAt: structAt,
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({ sm: fc.constant('section' as const), at: structAt, id: idPickArb }),
    weight: 2,
  },
  { arbitrary: fc.record({ sm: fc.constant('drop' as const), at: structAt }), weight: 1 },
  { arbitrary: fc.record({ sm: fc.constant('gc' as const), at: structAt }), weight: 1 },
  {
    arbitrary: fc.record({
      sm: fc.constant('skip' as const),
      at: structAt,
      n: fc.integer({ min: 1, max: 3 }),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      sm: fc.constant('delete' as const),
      id: idPickArb,
      n: fc.integer({ min: 1, max: 4 }),
    }),
    weight: 2,
  },
)

export const frameArb: fc.Arbitrary<FrameSpec> = fc.oneof(
  { arbitrary: baseFrameArb, weight: 3 },
  {
    arbitrary: fc.record({
      f: fc.constant('restructured' as const),
      ref: updateRefArb,
      step2: fc.boolean(),
      mutations: fc.array(structMutationArb, { minLength: 1, maxLength: 3 }),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      f: fc.constant('mutated' as const),
      base: baseFrameArb.filter((b) => b.f !== 'big'),
      payload: fc.boolean(),
      mutations: fc.array(mutationArb, { minLength: 1, maxLength: 3 }),
    }),
    weight: 2,
  },
)

const sock = fc.nat({ max: SOCKETS - 1 })
const node = fc.nat({ max: 1 })

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    arbitrary: fc.record({ s: fc.constant('send' as const), sock, node, frame: frameArb }),
    weight: 12,
  },
  {
    arbitrary: fc.record({
      s: fc.constant('post' as const),
      node,
      frame: fc.oneof(
        {
          arbitrary: fc.record({
            f: fc.constant('update' as const),
            ref: updateRefArb,
            step2: fc.constant(false),
          }),
          weight: 3,
        },
        frameArb,
      ),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      s: fc.constant('honest' as const),
      who: fc.nat({ max: 1 }),
      edit: editArb,
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ s: fc.constant('close' as const), sock }), weight: 1 },
  {
    arbitrary: fc.record({ s: fc.constant('tick' as const), ms: fc.constantFrom(0, 0, 5, 20) }),
    weight: 2,
  },
)

export const casePlanArb: fc.Arbitrary<CasePlan> = fc
  .array(clientIdArb, { minLength: 1, maxLength: 3 })
  .chain((clients) =>
    fc.record({
      clients: fc.constant(clients),
      writers: fc.array(writerArb(clients.length), { minLength: 1, maxLength: 4 }),
      steps: fc.array(stepArb, { minLength: 1, maxLength: 24 }),
    }),
  )
