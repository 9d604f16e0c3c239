/**
 * `streambed <command>`: one binary for every process kind and the operator's commands.
 *   server   a server node (WebSocket + HTTP on PORT)
 *   worker   a compaction worker
 *   all      server node and worker in one process (development default of `npm start`)
 *   revoke   refuse tokens and close their sockets on every node
 */
import { fail, usageError } from './cli-io.js'
import { revoke } from './commands/revoke.js'
import { run } from './commands/run.js'

const usage = `Usage: streambed <command> [options]

Commands:
  server   run a server node (y-websocket protocol + HTTP API on PORT); needs AUTH_MODE
  worker   run a compaction worker
  all      run a server node and a worker in one process (development; AUTH_MODE=none)
  revoke   refuse tokens (by subject, document or token id) and close their sockets
  help     show this text

Options of server, worker, all:
  --spawn-redis   if no Redis answers at REDIS_URL (on this machine), start a local
                  redis-server for development, with its data in STORAGE_DIR/redis

Run "streambed <command> --help" for a command's own options. Configuration comes from
environment variables; see the README for the full table.`

const main = async (argv: readonly string[]): Promise<void> => {
  const [command = 'help', ...rest] = argv
  switch (command) {
    case 'server':
    case 'worker':
    case 'all':
      if (rest.includes('--help') || rest.includes('-h')) break
      return run(command, new Set(rest.filter((a) => a.startsWith('-'))), process.env)
    case 'revoke':
      return revoke(rest, process.env)
    case 'help':
    case '--help':
    case '-h':
      break
    default:
      throw usageError(`unknown command "${command}"`, usage)
  }
  process.stdout.write(`${usage}\n`)
}

main(process.argv.slice(2)).catch((err: unknown) => fail(err))
