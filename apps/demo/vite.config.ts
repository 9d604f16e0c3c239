import { defineConfig } from 'vite'

/**
 * `vite build` writes dist/, which a server node serves at / (DEMO=on, the default of
 * `streambed all`). `npm run dev --workspace @streambed/demo` serves the page with hot reload on
 * :5173; it then connects to ws://localhost:8080 (a running `npm start`) unless `?server=` says
 * otherwise.
 */
export default defineConfig({
  build: {
    // Tiptap, ProseMirror and Yjs make one ~600 kB chunk (~190 kB gzipped); fine for a demo.
    chunkSizeWarningLimit: 1024,
  },
  server: { port: 5173, strictPort: false },
})
