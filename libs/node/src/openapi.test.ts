import { describe, expect, it } from 'vitest'
import { isAppError, errorCatalogue } from '@streambed/common'
import { checkDocName } from '@streambed/protocol'
import { openApiDocument as spec, type Schema } from './openapi.js'

/** Every value under `value` that is an object, with its JSON pointer. */
const walk = function* (value: unknown, at = ''): Generator<[string, Record<string, unknown>]> {
  if (typeof value !== 'object' || value === null) return
  const obj = value as Record<string, unknown>
  yield [at, obj]
  for (const [k, v] of Object.entries(obj)) yield* walk(v, `${at}/${k}`)
}

const operations = Object.entries(spec.paths).flatMap(([path, item]) =>
  Object.entries(item).map(([method, op]) => ({ path, method, op })),
)

describe('openApiDocument', () => {
  it('lists every catalogued error code, and each error status with exactly its codes', () => {
    const errorSchema = spec.components.schemas.Error as Schema
    const code = errorSchema.properties?.error?.properties?.code
    expect([...(code?.enum ?? [])].sort()).toEqual(Object.keys(errorCatalogue).sort())
    let checked = 0
    for (const { path, method, op } of operations) {
      for (const [status, response] of Object.entries(op.responses)) {
        const schema = response.content?.['application/json']?.schema
        if (schema?.$ref !== '#/components/schemas/Error') continue
        const codes = schema.properties?.error?.properties?.code?.enum
        const expected = Object.entries(errorCatalogue)
          .filter(([, info]) => String(info.httpStatus) === status)
          .map(([c]) => c)
        expect(codes, `${method} ${path} ${status}`).toEqual(expected)
        expect(response.description, `${method} ${path} ${status}`).toContain(expected[0])
        checked++
      }
    }
    expect(checked).toBeGreaterThan(operations.length)
  })

  it('resolves every $ref, and names each operation once', () => {
    const refs = [...walk(spec)].flatMap(([, o]) => (typeof o.$ref === 'string' ? [o.$ref] : []))
    expect(refs.length).toBeGreaterThan(0)
    for (const ref of refs) {
      const name = /^#\/components\/schemas\/(\w+)$/.exec(ref)?.[1]
      expect(name && spec.components.schemas[name], ref).toBeDefined()
    }
    const ids = operations.map((o) => o.op.operationId)
    expect(new Set(ids).size).toBe(ids.length)
  })

  it('declares the path parameter of every templated path, and only known security schemes', () => {
    for (const { path, method, op } of operations) {
      const templated = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1])
      const declared = (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name)
      expect(declared, `${method} ${path}`).toEqual(templated)
      for (const requirement of op.security)
        for (const scheme of Object.keys(requirement))
          expect(spec.components.securitySchemes[scheme], scheme).toBeDefined()
    }
  })

  it("describes document names as the node's rules do", () => {
    const name = operations[0]?.op.parameters?.find((p) => p.name === 'name')?.schema
    const pattern = new RegExp(name?.pattern ?? '$^')
    const accepts = (n: string) => {
      try {
        checkDocName(n)
        return true
      } catch (err) {
        if (isAppError(err, 'BAD_DOC_NAME')) return false
        throw err
      }
    }
    // `.` and `..` segments are refused too; the pattern leaves those to the description.
    const samples = ['notes', 'team-1/notes', 'a:b@c+d=e,f~g_h.i', 'a//b', '/a', 'a/', 'a b']
    for (const n of [...samples, 'ü', 'a{b}', 'a%2Fb', 'x'.repeat(200)])
      expect(pattern.test(n), n).toBe(accepts(n))
    expect(name?.maxLength).toBe(200)
    expect(accepts('x'.repeat(201))).toBe(false)
  })
})
