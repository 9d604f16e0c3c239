/**
 * The socket floor: a bare uWebSockets.js echo server, the least any WebSocket server on this
 * machine can do. Prints {"port": n} once listening. Run as its own process so its RSS is its own.
 */
import uWS from 'uWebSockets.js'

const app = uWS.App().ws('/*', {
  maxPayloadLength: 16 * 1024 * 1024,
  idleTimeout: 0,
  message: (ws, message, isBinary) => {
    ws.send(message, isBinary)
  },
})
app.listen('127.0.0.1', 0, (listenSocket) => {
  if (!listenSocket) process.exit(1)
  process.stdout.write(
    `${JSON.stringify({ msg: 'echo listening', port: uWS.us_socket_local_port(listenSocket) })}\n`,
  )
})
