/**
 * The anchors GitHub gives a Markdown file's headings (lower case, punctuation dropped, spaces to
 * hyphens), plus explicit `<a id="…">` / `<a name="…">` anchors.
 */
export const headingAnchors = (markdown: string): Set<string> => {
  const anchors = new Set<string>()
  for (const m of markdown.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    anchors.add(
      m[1]!
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-'),
    )
  }
  for (const m of markdown.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(m[1]!)
  return anchors
}
