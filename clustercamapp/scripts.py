"""JavaScript the page runs once when it loads (``demo.load(None, js=...)``)."""

from __future__ import annotations

#: Gallery thumbnails are buttons that Gradio names "Thumbnail 3 of 12" while their visible caption
#: says "cluster 2 · BASE · p 0.912": a screen reader (and axe-core's label-content-name-mismatch
#: rule) hears a name that is not what is shown. This names every thumbnail by its caption first,
#: keeping Gradio's position after it, and keeps doing so as galleries are redrawn.
ACCESSIBLE_GALLERIES = """() => {
  const name = (button) => {
    const caption = (button.querySelector('.caption-label')?.textContent || button.querySelector('img')?.alt || '').trim();
    if (!caption) return;
    const label = button.getAttribute('aria-label') || '';
    if (label.startsWith(caption)) return;
    const position = label.match(/thumbnail \\d+ of \\d+/i);
    button.setAttribute('aria-label', position ? `${caption} (${position[0].toLowerCase()})` : caption);
  };
  const all = () => document.querySelectorAll('button.thumbnail-item, .gallery-item > button').forEach(name);
  new MutationObserver(all).observe(document.body, {
    subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['aria-label', 'alt'],
  });
  all();
}"""
