/**
 * One error type for the whole code base. Code paths throw `AppError` with a catalogued `code`;
 * edges (HTTP, WebSocket, CLI, worker loop) translate it with `describeError` and nothing else.
 */

/** WebSocket close codes sent by Streambed. 4400-4499 tell y-websocket clients not to reconnect. */
export const CloseCode = {
  /** Server shutting down or node draining; the client reconnects (to another node). */
  goingAway: 1001,
  /** A frame larger than WS_MAX_MESSAGE_BYTES; the client would only send it again. */
  messageTooBig: 4413,
  /** A frame that is not a valid y-websocket message or carries an invalid Yjs/awareness payload. */
  badMessage: 4400,
  /** Missing, malformed, expired or wrongly signed token. */
  unauthorized: 4401,
  /** Valid token that does not grant access to this document. */
  forbidden: 4403,
  /** Document name breaks the naming rules. */
  badDocName: 4404,
  /** Internal error; transient, the client reconnects and resyncs. */
  internal: 4500,
  /** Redis or storage unavailable; nothing from this socket was lost, the client resyncs. */
  unavailable: 4503,
  /** The client reads slower than the document changes (send buffer over the limit). */
  slowConsumer: 4508,
  /** The node lost track of the stream for this document and cannot patch it; resync. */
  resync: 4509,
  /** The client sends faster than updates can be appended, or than its rate limits allow. */
  tooManyInFlight: 4529,
  /** The token's `exp` passed: reconnect with a fresh token. */
  tokenExpired: 4410,
  /** The token was revoked (`streambed revoke`): reconnect with a fresh token. */
  tokenRevoked: 4411,
  /** The document was deleted (DELETE /docs/<name>); a client reconnecting would write it back. */
  documentDeleted: 4405,
} as const
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode]

interface CodeInfo {
  readonly httpStatus: number
  readonly closeCode: CloseCode
  readonly exitCode: number
  readonly description: string
}

/** Every error code with its translation at each edge. Documented in the README. */
export const errorCatalogue = {
  BAD_MESSAGE: {
    httpStatus: 400,
    closeCode: CloseCode.badMessage,
    exitCode: 65,
    description: 'a message or update that does not decode',
  },
  BAD_DOC_NAME: {
    httpStatus: 400,
    closeCode: CloseCode.badDocName,
    exitCode: 65,
    description: 'document name breaks the naming rules',
  },
  TOO_LARGE: {
    httpStatus: 413,
    closeCode: CloseCode.messageTooBig,
    exitCode: 65,
    description: 'payload above the configured size limit',
  },
  UNAUTHORIZED: {
    httpStatus: 401,
    closeCode: CloseCode.unauthorized,
    exitCode: 77,
    description: 'missing or invalid token',
  },
  FORBIDDEN: {
    httpStatus: 403,
    closeCode: CloseCode.forbidden,
    exitCode: 77,
    description: 'token does not grant this access',
  },
  NOT_FOUND: {
    httpStatus: 404,
    closeCode: CloseCode.badMessage,
    exitCode: 66,
    description: 'no such route or document',
  },
  CONFIG: {
    httpStatus: 500,
    closeCode: CloseCode.internal,
    exitCode: 78,
    description: 'invalid configuration',
  },
  REDIS_UNAVAILABLE: {
    httpStatus: 503,
    closeCode: CloseCode.unavailable,
    exitCode: 69,
    description: 'Redis did not answer or refused the command',
  },
  STORAGE_UNAVAILABLE: {
    httpStatus: 503,
    closeCode: CloseCode.unavailable,
    exitCode: 69,
    description: 'the storage backend failed',
  },
  CLOCK_GAP: {
    httpStatus: 409,
    closeCode: CloseCode.resync,
    exitCode: 65,
    description:
      "an update continues a client's clocks past what the document holds (the server lost recent updates, e.g. in a Redis failover, or the writer skipped clocks): resync and send again",
  },
  STREAM_GAP: {
    httpStatus: 503,
    closeCode: CloseCode.resync,
    exitCode: 70,
    description: 'entries needed for a consistent read were trimmed meanwhile',
  },
  TOO_MANY_CONNECTIONS: {
    httpStatus: 503,
    closeCode: CloseCode.unavailable,
    exitCode: 75,
    description: 'the node or the document has as many sockets as MAX_CONNECTIONS allows',
  },
  RATE_LIMITED: {
    httpStatus: 429,
    closeCode: CloseCode.tooManyInFlight,
    exitCode: 75,
    description: 'more messages, bytes or requests per second than the configured limits allow',
  },
  OVERLOADED: {
    httpStatus: 429,
    closeCode: CloseCode.tooManyInFlight,
    exitCode: 75,
    description: 'too much work in flight for this client',
  },
  SHUTTING_DOWN: {
    httpStatus: 503,
    closeCode: CloseCode.goingAway,
    exitCode: 0,
    description: 'the process is stopping',
  },
  INTERNAL: {
    httpStatus: 500,
    closeCode: CloseCode.internal,
    exitCode: 70,
    description: 'a bug; see the log line with the same request id',
  },
} as const satisfies Record<string, CodeInfo>

export type ErrorCode = keyof typeof errorCatalogue

export class AppError extends Error {
  override readonly name = 'AppError'
  readonly code: ErrorCode
  readonly details: Readonly<Record<string, unknown>> | undefined

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.details = options.details
  }
}

export const isAppError = (err: unknown, code?: ErrorCode): err is AppError =>
  err instanceof AppError && (code === undefined || err.code === code)

/** Wraps anything thrown into an AppError, keeping AppErrors as they are. */
export const toAppError = (err: unknown, fallback: ErrorCode = 'INTERNAL'): AppError => {
  if (err instanceof AppError) return err
  const message = err instanceof Error ? err.message : String(err)
  return new AppError(fallback, message, { cause: err })
}

/**
 * `err` as an AppError of `code` whose message names what failed (`<what>: <cause's message>`);
 * an AppError passes unchanged. The one translation of a dependency's failure (Redis, storage).
 */
export const failure = (code: ErrorCode, what: string, err: unknown): AppError =>
  err instanceof AppError
    ? err
    : new AppError(code, `${what}: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      })

/** Runs `fn`, translating anything it throws with `failure(code, what, err)`. */
export const guarded = async <T>(
  code: ErrorCode,
  what: string,
  fn: () => Promise<T>,
): Promise<T> => {
  try {
    return await fn()
  } catch (err) {
    throw failure(code, what, err)
  }
}

/** The single place where an error becomes an edge-specific answer. */
export const describeError = (
  err: unknown,
): CodeInfo & { code: ErrorCode; message: string; expose: boolean } => {
  const appErr = toAppError(err)
  const info = errorCatalogue[appErr.code]
  // Internal failures are reported by code only; their message may carry implementation detail.
  const expose = appErr.code !== 'INTERNAL'
  return { ...info, code: appErr.code, message: expose ? appErr.message : info.description, expose }
}
