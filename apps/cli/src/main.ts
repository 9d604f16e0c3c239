/**
 * `streambed <command>`: one binary for every process kind and the operator's commands.
 *   server   a server node (WebSocket + HTTP on PORT)
 *   worker   a compaction worker
 *   all      server node and worker in one process (development default of `npm start`)
 *   revoke   refuse tokens and close their sockets on every node
 *   webhooks status, failed and resent webhook deliveries
 *   inspect, export, import, backup, restore, replay, verify, history, restore-doc: see
 *            commands/recovery.ts
 */
import { fail, usageError } from './cli-io.js'

// Each command's module is imported when that command runs, so that a process loads only what it
// uses: a server node does not load the recovery commands (BullMQ, the S3 SDK) or the worker.

const usage = `Usage: streambed <command> [options]

Commands:
  server   run a server node (y-websocket protocol + HTTP API on PORT); needs AUTH_MODE
  worker   run a compaction worker
  all      run a server node and a worker in one process (development; AUTH_MODE=none)
  revoke   refuse tokens (by subject, document or token id) and close their sockets
  webhooks webhook deliveries: status, failed, resend
  help     show this text

Operations and recovery (long ones run on the workers; --inline runs them here):
  inspect [<doc>]              a document's stream, task, storage and history, or the deployment
  export <doc> [--at <time>]   a document (as it was) as a Yjs update or JSON
  import <doc> <file>          append an update through the normal write path
  backup <dest>                every document to a directory or s3://bucket/prefix/
  restore <src>                a backup into an empty Redis + storage, then verify
  replay (--from-log | <src>)  re-append archived entries after Redis lost data
  verify [<doc>…]              fresh clients get what storage + stream hold; --backup <src>
  history <doc>                a document's versions
  restore-doc <doc> --at <t>   a document as it was, written back as a forward update

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
      return (await import('./commands/run.js')).run(
        command,
        new Set(rest.filter((a) => a.startsWith('-'))),
        process.env,
      )
    case 'revoke':
      return (await import('./commands/revoke.js')).revoke(rest, process.env)
    case 'webhooks':
      return (await import('./commands/webhooks.js')).webhooks(rest, process.env)
    case 'inspect':
    case 'export':
    case 'import':
    case 'backup':
    case 'restore':
    case 'replay':
    case 'verify':
    case 'history':
    case 'restore-doc':
      return (await import('./commands/recovery.js')).runRecoveryCommand(command, rest, process.env)
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
