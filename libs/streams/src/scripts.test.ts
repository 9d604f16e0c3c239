import { readdirSync, readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { expandIncludes, scripts } from './scripts.js'

const luaDir = new URL('../lua/', import.meta.url)

/** Every .lua file under lua/, as a path relative to it. */
const luaFiles = readdirSync(luaDir, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.lua'))
  .sort()

const localFunctions = (lua: string): string[] =>
  [...lua.matchAll(/^\s*local\s+function\s+([A-Za-z_]\w*)/gm)].map((m) => m[1] as string)

/** An include reader over a fixed set of files. */
const from =
  (files: Record<string, string>) =>
  (name: string): string | undefined =>
    files[name]

describe('Lua scripts', () => {
  it.each(Object.values(scripts).map((s) => [s.name, s] as const))(
    '%s expands with no include directive left, header first',
    (_, script) => {
      expect(script.lua).not.toMatch(/@include/)
      expect(script.lua.startsWith('--[[\n')).toBe(true)
      expect(script.lua).toMatch(/\bKEYS\[1\]/)
      expect(script.lua).toMatch(/\breturns\b/)
    },
  )

  it('puts each helper a script uses into it exactly once', () => {
    for (const script of Object.values(scripts)) {
      const defined = localFunctions(script.lua)
      expect(new Set(defined).size, script.name).toBe(defined.length)
    }
    expect(localFunctions(scripts.append.lua)).toEqual([
      'redisTimeMs',
      'parseId',
      'idLess',
      'appendEntry',
    ])
    expect(localFunctions(scripts.awarenessSet.lua)).toEqual([
      'redisTimeMs',
      'varuint',
      'parseRecord',
    ])
  })

  it('defines every local function in one file under lua/ only', () => {
    const where = new Map<string, string[]>()
    for (const file of luaFiles) {
      for (const fn of localFunctions(readFileSync(new URL(file, luaDir), 'utf8'))) {
        where.set(fn, [...(where.get(fn) ?? []), file])
      }
    }
    const twice = [...where].filter(([, files]) => files.length > 1)
    expect(twice).toEqual([])
    // The check sees the helpers at all (it would pass vacuously on a wrong pattern).
    expect(where.get('varuint')).toEqual(['includes/varuint.lua'])
  })

  it('uses every include file in some script', () => {
    const includes = luaFiles.filter((f) => f.startsWith('includes/'))
    const used = includes.filter((f) =>
      luaFiles.some((s) =>
        readFileSync(new URL(s, luaDir), 'utf8').includes(
          `--- @include "${f.slice('includes/'.length, -'.lua'.length)}"`,
        ),
      ),
    )
    expect(includes.length).toBeGreaterThan(0)
    expect(used).toEqual(includes)
  })
})

describe('expandIncludes', () => {
  it('replaces a directive line with the include, keeping what comes before and after', () => {
    const lua = '--[[ header ]]\n--- @include "a"\nreturn a()\n'
    expect(expandIncludes('x-1.lua', lua, from({ a: 'local function a() return 1 end\n' }))).toBe(
      '--[[ header ]]\nlocal function a() return 1 end\nreturn a()\n',
    )
  })

  it('expands includes of includes first, and each include once', () => {
    const read = from({
      a: '--- @include "b"\nlocal function a() return b() end\n',
      b: '--- @include "a"\nlocal function b() return 2 end\n',
    })
    const lua = '--- @include "a"\n--- @include "b"\nreturn a()'
    expect(expandIncludes('x-1.lua', lua, read)).toBe(
      // b's directive for a, already being expanded, and the script's second directive for b
      // are left as empty lines.
      '\nlocal function b() return 2 end\nlocal function a() return b() end\n\nreturn a()',
    )
  })

  it('throws naming the script and the include when an include is missing', () => {
    expect(() => expandIncludes('x-1.lua', '--- @include "nope"\nreturn 1', from({}))).toThrow(
      'x-1.lua: include "nope" not found (lua/includes/nope.lua)',
    )
    const read = from({ a: '--- @include "gone"\n' })
    expect(() => expandIncludes('y-2.lua', '--- @include "a"\n', read)).toThrow(
      'y-2.lua: include "gone" not found (lua/includes/gone.lua) (in includes/a.lua)',
    )
  })

  it('throws on a malformed directive rather than sending it to Redis as a comment', () => {
    for (const line of [
      '--- @include a',
      "--- @include 'a'",
      '---@include "a"',
      '--- @include "A b"',
    ]) {
      expect(() => expandIncludes('x-1.lua', `${line}\nreturn 1`, from({ a: '' }))).toThrow(
        `x-1.lua: malformed include directive: ${line}`,
      )
    }
  })
})
