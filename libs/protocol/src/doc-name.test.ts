import { appErrorOf } from '@streambed/testing'
import { describe, it, expect } from 'vitest'
import { checkDocName, DOC_NAME_MAX_LENGTH, docNameRules, parseDocName } from './doc-name.js'

describe('checkDocName accepts', () => {
  it.each([
    ['letters', 'AbcXyz'],
    ['digits', '0123456789'],
    ['a single character', 'a'],
    ['nested segments', 'a/b/c'],
    ['a realistic name', 'team-42/notes/2024-01-01.md'],
    ...[...'-_.~:@+=,'].map((c) => [`the punctuation ${JSON.stringify(c)}`, `a${c}b`]),
    ['punctuation-only segments other than . and ..', '.../-/~'],
    ['a dot inside a segment', 'a/.hidden/b.'],
    ['200 characters', 'x'.repeat(DOC_NAME_MAX_LENGTH)],
  ])('%s', (_name, docName) => {
    expect(checkDocName(docName)).toBe(docName)
  })

  it('allows exactly 200 characters', () => {
    expect(DOC_NAME_MAX_LENGTH).toBe(200)
  })
})

describe('checkDocName rejects with BAD_DOC_NAME', () => {
  it.each([
    ['empty', '', 'empty'],
    ['201 characters', 'x'.repeat(201), '201 characters'],
    ['an opening brace', 'a{b', 'character "{" not allowed'],
    ['a closing brace', 'a}b', 'character "}" not allowed'],
    ['a hash tag', '{doc}', 'character "{" not allowed'],
    ['a space', 'a b', 'character " " not allowed'],
    ['a percent sign', 'a%b', 'character "%" not allowed'],
    ['a non-ASCII letter', 'caf\u00e9', 'character "\u00e9" not allowed'],
    ['an emoji', 'doc\u{1f600}', 'character "\u{1f600}" not allowed'],
    ['a backslash', 'a\\b', 'character "\\\\" not allowed'],
    ['a question mark', 'a?b', 'character "?" not allowed'],
    ['a newline', 'a\nb', 'character "\\n" not allowed'],
    ['a leading slash', '/a', 'empty path segment'],
    ['a trailing slash', 'a/', 'empty path segment'],
    ['a lone slash', '/', 'empty path segment'],
    ['an empty segment', 'a//b', 'empty path segment'],
    ['a "." segment', 'a/./b', '"." segment'],
    ['a ".." segment', 'a/../b', '".." segment'],
    ['a name that is "."', '.', '"." segment'],
    ['a name that is ".."', '..', '".." segment'],
    ['a leading ".." segment', '../a', '".." segment'],
    ['a trailing "." segment', 'a/.', '"." segment'],
  ])('%s', (_name, docName, why) => {
    const err = appErrorOf(() => checkDocName(docName))
    expect(err.code).toBe('BAD_DOC_NAME')
    expect(err.message).toBe(`invalid document name: ${why}; expected ${docNameRules}`)
  })
})

describe('parseDocName', () => {
  it.each([
    ['a%2Fb', 'a/b'],
    ['a%2fb', 'a/b'],
    ['%41', 'A'],
    ['notes%3A2024', 'notes:2024'],
    ['plain/name', 'plain/name'],
  ])('percent-decodes %s to %s', (raw, decoded) => {
    expect(parseDocName(raw)).toBe(decoded)
  })

  it.each([
    ['%', 'a trailing %'],
    ['a%2', 'a cut escape'],
    ['%zz', 'a non-hex escape'],
    ['%C3', 'an incomplete UTF-8 sequence'],
    ['%E0%A4%A', 'a cut multi-byte escape'],
  ])('rejects malformed percent-encoding: %s (%s)', (raw) => {
    const err = appErrorOf(() => parseDocName(raw))
    expect(err.code).toBe('BAD_DOC_NAME')
    expect(err.message).toBe('invalid document name: malformed percent-encoding')
    expect(err.cause).toBeInstanceOf(URIError)
  })

  it.each([
    ['%7Bdoc%7D', 'character "{" not allowed'],
    ['a%20b', 'character " " not allowed'],
    ['a%25b', 'character "%" not allowed'],
    ['caf%C3%A9', 'character "\u00e9" not allowed'],
    ['a%2F%2Fb', 'empty path segment'],
    ['%2Fa', 'empty path segment'],
    ['a%2F..', '".." segment'],
    ['%2E', '"." segment'],
    ['', 'empty'],
  ])('checks the decoded name: %s', (raw, why) => {
    const err = appErrorOf(() => parseDocName(raw))
    expect(err.code).toBe('BAD_DOC_NAME')
    expect(err.message).toBe(`invalid document name: ${why}; expected ${docNameRules}`)
  })

  it('counts the length after decoding', () => {
    const raw = '%41'.repeat(DOC_NAME_MAX_LENGTH)
    expect(parseDocName(raw)).toBe('A'.repeat(DOC_NAME_MAX_LENGTH))
    const err = appErrorOf(() => parseDocName(raw + '%41'))
    expect(err.message).toMatch(/^invalid document name: 201 characters;/)
  })
})
