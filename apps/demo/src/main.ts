/**
 * The Streambed editor demo: one Tiptap editor bound to a Yjs document that a plain y-websocket
 * provider syncs with a node. Everything the page knows comes from its address (settings.ts);
 * the badge follows the provider's events (status.ts).
 */
import './style.css'
import { Editor } from '@tiptap/core'
import Collaboration from '@tiptap/extension-collaboration'
import CollaborationCaret from '@tiptap/extension-collaboration-caret'
import StarterKit from '@tiptap/starter-kit'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import {
  hrefFor,
  loadUser,
  MAX_NAME_LENGTH,
  randomDocName,
  sameOriginServer,
  sameTarget,
  saveUser,
  type Target,
  targetOf,
  type User,
  validUser,
} from './settings.js'
import { type Badge, badgeAfter, initialBadge, type ProviderEvent } from './status.js'

const element = <T extends HTMLElement>(id: string, type: new () => T): T => {
  const el = document.getElementById(id)
  if (!(el instanceof type)) throw new Error(`index.html lacks #${id}`)
  return el
}

const ui = {
  form: element('open-form', HTMLFormElement),
  doc: element('doc-name', HTMLInputElement),
  token: element('token', HTMLInputElement),
  name: element('user-name', HTMLInputElement),
  color: element('user-color', HTMLInputElement),
  badge: element('status', HTMLElement),
  reconnect: element('reconnect', HTMLButtonElement),
  editor: element('editor', HTMLElement),
}

// `npm run dev` serves the page from Vite; the node is then the one `npm start` runs.
const defaultServer = import.meta.env.DEV ? 'ws://localhost:8080' : sameOriginServer(location.href)

interface Session {
  readonly target: Target
  readonly provider: WebsocketProvider
  readonly editor: Editor
  destroy(): void
}

let user: User = loadUser(localStorage)
saveUser(localStorage, user)
let session: Session | null = null
// Load-to-synced time of the page's first document (shown in the badge's tooltip; read by tests).
let firstSyncMs: number | null = null

const showBadge = (badge: Badge) => {
  ui.badge.dataset.state = badge.state
  ui.badge.textContent = badge.text
  ui.reconnect.hidden = badge.state !== 'stopped'
}

const open = (target: Target): Session => {
  const ydoc = new Y.Doc()
  // The node validates the name (close 4404 says why); the path carries it percent-encoded.
  const room = target.doc.split('/').map(encodeURIComponent).join('/')
  const provider = new WebsocketProvider(target.serverUrl, room, ydoc, {
    params: target.token ? { token: target.token } : {},
    // Tabs of one browser would otherwise sync among themselves; the demo shows the server's work.
    disableBc: true,
  })
  const editor = new Editor({
    element: ui.editor,
    extensions: [
      // Undo and redo come from Collaboration (a Yjs UndoManager: only your own changes).
      StarterKit.configure({ undoRedo: false }),
      Collaboration.configure({ document: ydoc }),
      CollaborationCaret.configure({ provider, user }),
    ],
    editorProps: { attributes: { 'aria-label': `Document ${target.doc}`, spellcheck: 'false' } },
  })
  let badge = initialBadge
  const on = (event: ProviderEvent) => {
    badge = badgeAfter(badge, event)
    showBadge(badge)
  }
  showBadge(badge)
  provider.on('status', ({ status }) => on({ kind: 'status', status }))
  provider.on('sync', (synced) => {
    if (synced && firstSyncMs === null) {
      firstSyncMs = Math.round(performance.now())
      ui.badge.dataset.firstSyncMs = String(firstSyncMs)
      ui.badge.title = `first sync ${firstSyncMs} ms after the page started loading`
    }
    on({ kind: 'sync', synced })
  })
  provider.on('connection-close', (event) =>
    on({ kind: 'close', code: event?.code ?? null, reason: event?.reason ?? '' }),
  )
  provider.on('closed', ({ code, reason }) => on({ kind: 'stopped', code, reason }))
  return {
    target,
    provider,
    editor,
    destroy: () => {
      editor.destroy()
      provider.destroy()
      ydoc.destroy()
      ui.editor.replaceChildren()
    },
  }
}

/** Opens the document the address names (a new random one if none); no-op if already open. */
const openFromAddress = () => {
  let target = targetOf(location.href, defaultServer)
  if (!target.doc) {
    history.replaceState(null, '', hrefFor(location.href, randomDocName(), target.token))
    target = targetOf(location.href, defaultServer)
  }
  ui.doc.value = target.doc
  ui.token.value = target.token ?? ''
  document.title = `${target.doc} · Streambed demo`
  if (session && sameTarget(session.target, target)) return
  session?.destroy()
  session = open(target)
}

ui.form.addEventListener('submit', (event) => {
  event.preventDefault()
  const doc = ui.doc.value.trim()
  if (!doc) return
  history.pushState(null, '', hrefFor(location.href, doc, ui.token.value.trim() || null))
  openFromAddress()
})
window.addEventListener('hashchange', openFromAddress)
window.addEventListener('popstate', openFromAddress)

ui.name.maxLength = MAX_NAME_LENGTH
ui.name.value = user.name
ui.color.value = user.color
const updateUser = () => {
  user = validUser({ name: ui.name.value, color: ui.color.value }, user)
  saveUser(localStorage, user)
  session?.editor.commands.updateUser({ name: user.name, color: user.color })
}
ui.name.addEventListener('change', updateUser)
ui.color.addEventListener('input', updateUser)

ui.reconnect.addEventListener('click', () => {
  if (!session) return
  // A refused connection (44xx) needs a new start: a fresh badge, the same document.
  const { target } = session
  session.destroy()
  session = open(target)
})

openFromAddress()
