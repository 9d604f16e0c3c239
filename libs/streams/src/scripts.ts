import { readFileSync } from 'node:fs'
import type { Redis } from './redis.js'

/**
 * Lua scripts live in `libs/streams/lua/<name>-<NKEYS>.lua`, each headed by its KEYS/ARGV/returns.
 * Helpers they share live once in `lua/includes/<name>.lua`, pulled in by a line
 * `--- @include "<name>"` (as BullMQ's `commands/includes/`). They are registered on each client
 * with ioredis' `defineCommand`, which sends EVALSHA and falls back to EVAL after a NOSCRIPT (e.g.
 * after a Redis restart), also inside pipelines.
 */
export type ScriptArg = string | Buffer | Uint8Array | number

export interface Script {
  readonly name: string
  readonly numberOfKeys: number
  /** The Lua sent to Redis: the script file with its includes expanded. */
  readonly lua: string
  /** Runs the script; binary-safe (arguments and replies as Buffers). */
  run(redis: Redis, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown>
}

const luaDir = new URL('../lua/', import.meta.url)
const includeDir = new URL('includes/', luaDir)
const registered = new WeakMap<Redis, Set<string>>()

/** The text of `lua/includes/<name>.lua`, or undefined when there is no such file. */
export type ReadInclude = (name: string) => string | undefined

const readInclude: ReadInclude = (name) => {
  try {
    return readFileSync(new URL(`${name}.lua`, includeDir), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/**
 * `lua` (the text of `script`) with every `--- @include "<name>"` line replaced by
 * `lua/includes/<name>.lua`, itself expanded the same way. Each include goes in once, where it is
 * first named. Throws, naming the script and the include, when one is missing or a directive is
 * malformed.
 */
export const expandIncludes = (script: string, lua: string, read = readInclude): string => {
  const done = new Set<string>()
  const expand = (text: string, from: string): string =>
    text.replace(/^---[ \t]*@include\b.*$/gm, (line) => {
      const name = /^--- @include "([a-z0-9][a-z0-9-]*)"\s*$/.exec(line)?.[1]
      const via = from === script ? '' : ` (in ${from})`
      if (!name) throw new Error(`${script}: malformed include directive${via}: ${line}`)
      if (done.has(name)) return ''
      done.add(name)
      const include = read(name)
      if (include === undefined) {
        throw new Error(`${script}: include "${name}" not found (lua/includes/${name}.lua)${via}`)
      }
      return expand(include, `includes/${name}.lua`).trimEnd()
    })
  return expand(lua, script)
}

type BufferCommand = (...args: (string | Buffer | number)[]) => Promise<unknown>

export const loadScript = (file: string): Script => {
  const m = /^(.+)-(\d+)\.lua$/.exec(file)
  if (!m?.[1] || !m[2]) throw new TypeError(`script file name must be <name>-<NKEYS>.lua: ${file}`)
  const lua = expandIncludes(file, readFileSync(new URL(file, luaDir), 'utf8'))
  const numberOfKeys = Number(m[2])
  const name = m[1]
  const command = `streambed_${name.replace(/-/g, '_')}`
  return {
    name,
    numberOfKeys,
    lua,
    run: (redis, keys, args) => {
      if (keys.length !== numberOfKeys) {
        throw new TypeError(`${name} takes ${numberOfKeys} keys, got ${keys.length}`)
      }
      let names = registered.get(redis)
      if (!names) registered.set(redis, (names = new Set()))
      if (!names.has(command)) {
        redis.defineCommand(command, { numberOfKeys, lua })
        names.add(command)
      }
      const argv = args.map((a): string | Buffer | number =>
        a instanceof Uint8Array && !Buffer.isBuffer(a)
          ? Buffer.from(a.buffer, a.byteOffset, a.byteLength)
          : a,
      )
      const fn = (redis as unknown as Record<string, BufferCommand>)[
        `${command}Buffer`
      ] as BufferCommand
      return fn.call(redis, ...keys, ...argv)
    },
  }
}

export const scripts = {
  append: loadScript('append-3.lua'),
  appendInSlot: loadScript('append-2.lua'),
  read: loadScript('read-2.lua'),
  replicated: loadScript('replicated-1.lua'),
  awarenessSet: loadScript('awareness-set-1.lua'),
  awarenessExpire: loadScript('awareness-expire-1.lua'),
  heartbeat: loadScript('heartbeat-1.lua'),
  promote: loadScript('promote-2.lua'),
  settle: loadScript('settle-2.lua'),
  finish: loadScript('finish-2.lua'),
  seedClocks: loadScript('seed-clocks-1.lua'),
  deleteDoc: loadScript('delete-doc-3.lua'),
  dropClocks: loadScript('drop-clocks-1.lua'),
  restoreTail: loadScript('restore-tail-3.lua'),
  restoreTailInSlot: loadScript('restore-tail-2.lua'),
} as const
