"""How the page shows equations. Its words are in :mod:`clustercamapp.i18n` (``locales/*.yaml``)."""

from __future__ import annotations

#: LaTeX delimiters of every ``gr.Markdown`` that shows equations ($…$ inline, $$…$$ display).
LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
]
