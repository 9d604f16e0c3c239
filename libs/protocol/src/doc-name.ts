import { AppError } from '@streambed/common'

/**
 * Document names, as they appear after the first `/` of the WebSocket URL (percent-decoded):
 * - 1 to 200 characters;
 * - ASCII letters, digits and `- _ . ~ : @ + = ,` plus `/` as a separator;
 * - no leading or trailing `/`, no empty segment (`//`), no `.` or `..` segment.
 * Braces are excluded on purpose: Redis Cluster hash tags are `{docName}`.
 */
export const DOC_NAME_MAX_LENGTH = 200
const allowed = /^[A-Za-z0-9\-_.~:@+=,/]+$/

export const docNameRules =
  '1-200 characters from A-Z a-z 0-9 - _ . ~ : @ + = , and "/" between non-empty segments other than "." and ".."'

const reject = (why: string): AppError =>
  new AppError('BAD_DOC_NAME', `invalid document name: ${why}; expected ${docNameRules}`)

/** Checks a decoded name; throws `AppError('BAD_DOC_NAME')` with the rule it breaks. */
export const checkDocName = (name: string): string => {
  if (name.length === 0) throw reject('empty')
  if (name.length > DOC_NAME_MAX_LENGTH) throw reject(`${name.length} characters`)
  if (!allowed.test(name)) {
    const bad = [...name].find((c) => !allowed.test(c)) ?? ''
    throw reject(`character ${JSON.stringify(bad)} not allowed`)
  }
  for (const segment of name.split('/')) {
    if (segment === '') throw reject('empty path segment')
    if (segment === '.' || segment === '..') throw reject(`"${segment}" segment`)
  }
  return name
}

/** Percent-decodes a raw URL path segment (without the leading `/`) and checks it. */
export const parseDocName = (rawPath: string): string => {
  let decoded: string
  try {
    decoded = decodeURIComponent(rawPath)
  } catch (err) {
    throw new AppError('BAD_DOC_NAME', 'invalid document name: malformed percent-encoding', {
      cause: err,
    })
  }
  return checkDocName(decoded)
}
