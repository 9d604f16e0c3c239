import uWS from 'uWebSockets.js'
import { AppError } from '@streambed/common'

export { uWS }

/**
 * The uWebSockets.js package we install falls back, with only a console warning, to a slow
 * JavaScript shim when its native binary does not load (unsupported platform or Node ABI). The
 * shim lacks the native-only exports checked here.
 */
export const isNativeUws = (): boolean =>
  typeof (uWS as unknown as Record<string, unknown>).SSLApp === 'function' &&
  typeof (uWS as unknown as Record<string, unknown>).getParts === 'function'

/** Throws `AppError('CONFIG')` unless the native binary loaded or the fallback is allowed. */
export const assertNativeUws = (allowFallback: boolean): void => {
  if (isNativeUws() || allowFallback) return
  throw new AppError(
    'CONFIG',
    `uWebSockets.js could not load its native binary for ${process.platform}-${process.arch} ` +
      `(Node ABI ${process.versions.modules}) and fell back to a slow JavaScript shim. ` +
      'Use Node 20 on linux/darwin x64/arm64 or win32 x64, or set ALLOW_UWS_FALLBACK=true to run anyway.',
  )
}
