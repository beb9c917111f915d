"""JavaScript the page runs: once when it loads (``demo.load(None, js=...)``), or between two
chained events (``.success(None, js=...)``)."""

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

#: After step 1 of Explain (or an example), bring the heatmap, β and the class choice into view;
#: step 2 waits for step 1's heatmap to be on screen (at most 2 s), so that the server's work for
#: the rest (and other visitors' step 1) never competes with the first paint.
SCROLL_THEN_WAIT_FOR_PAINT = """async () => {
  document.getElementById('result-panel')?.scrollIntoView({block: 'start'});
  const frame = () => new Promise((done) => requestAnimationFrame(() => done()));
  const deadline = performance.now() + 2000;
  await frame();
  for (;;) {
    const picture = document.querySelector('#overlay img');
    if ((picture && picture.complete && picture.naturalWidth > 0) || performance.now() > deadline) break;
    await new Promise((done) => setTimeout(done, 15));
  }
  await frame();
}"""

#: Opening a shared link (``?deep_link=…``) restores the inputs and outputs; this re-runs Explain
#: on them (served from the server's cache when it still holds it) so that β and the class
#: respond again.
EXPLAIN_SHARED_LINK = """() => {
  if (!new URLSearchParams(window.location.search).has('deep_link')) return;
  setTimeout(() => {
    if (document.querySelector('#input-image img')) document.getElementById('explain-btn')?.click();
  }, 300);
}"""
