import { createHmac, timingSafeEqual } from 'node:crypto'

/** The header carrying a delivery's signature: `t=<unix seconds>,v1=<hex HMAC-SHA256>`. */
export const SIGNATURE_HEADER = 'streambed-signature'

/** HMAC-SHA256 over `<t>.<body>` with the shared secret, hex. */
const mac = (secret: string, t: number, body: string | Uint8Array): string =>
  createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex')

/** The signature header's value for `body` sent at `atMs`. */
export const signWebhook = (
  secret: string,
  body: string | Uint8Array,
  atMs = Date.now(),
): string => {
  const t = Math.floor(atMs / 1000)
  return `t=${t},v1=${mac(secret, t, body)}`
}

export type SignatureCheck =
  { readonly ok: true; readonly sentAtMs: number } | { readonly ok: false; readonly reason: string }

/**
 * Checks a delivery as a receiver should: the header parses, one `v1` signature matches the raw
 * body (compared in constant time), and the timestamp is within `toleranceMs` of `nowMs` (a
 * replayed old delivery is refused). Several `v1=` entries are accepted while a secret rotates.
 */
export const verifyWebhook = (
  secret: string,
  header: string | null | undefined,
  body: string | Uint8Array,
  opts: { toleranceMs?: number; nowMs?: number } = {},
): SignatureCheck => {
  if (!header) return { ok: false, reason: `missing ${SIGNATURE_HEADER} header` }
  let t: number | undefined
  const signatures: string[] = []
  for (const part of header.split(',')) {
    const [key, value] = part.trim().split('=', 2)
    if (key === 't' && value && /^\d+$/.test(value)) t = Number(value)
    else if (key === 'v1' && value) signatures.push(value)
  }
  if (t === undefined || signatures.length === 0)
    return {
      ok: false,
      reason: `malformed ${SIGNATURE_HEADER} header: expected t=<seconds>,v1=<hex>`,
    }
  const toleranceMs = opts.toleranceMs ?? 5 * 60_000
  const skew = Math.abs((opts.nowMs ?? Date.now()) - t * 1000)
  if (skew > toleranceMs)
    return {
      ok: false,
      reason: `timestamp ${t} is ${Math.round(skew / 1000)} s off (tolerance ${toleranceMs / 1000} s)`,
    }
  const expected = Buffer.from(mac(secret, t, body), 'hex')
  const matches = signatures.some((s) => {
    const got = Buffer.from(s, 'hex')
    return got.length === expected.length && timingSafeEqual(got, expected)
  })
  return matches
    ? { ok: true, sentAtMs: t * 1000 }
    : { ok: false, reason: 'signature does not match' }
}
