"""The page in the class's language: one table of strings, English plus translations.

Every text the page shows -- labels, help, notes, captions and the errors the app writes -- is a
key of ``locales/<language>.yaml`` (``en.yaml`` is the reference: every other file has exactly its
keys and the same ``{placeholders}``; ``tests/test_i18n.py`` holds them to it). Two ways out:

- :func:`T` for what the page shows as built (a component's label, info, a note, a button): a
  Gradio ``I18n`` key, translated in the browser from the language the browser asks for
  (``demo.launch(i18n=I18N)``);
- :func:`say` for what a handler writes (captions, sentences with numbers, errors): the string in
  the language of the request being served, read per call from the request (the page's
  language cookie, set by :data:`REMEMBER_LANGUAGE` from the language the page is shown in, else
  the ``Accept-Language`` header); an API caller that asks for nothing gets English. Nothing is
  stored per request: two visitors in two languages are served side by side.

Class names stay as ImageNet has them; the library's own messages (``clustercam``) are English.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import yaml
from gradio.context import LocalContext

from clustercam.methods import DEFAULT_BETA, DEFAULT_PRESET, DEFAULT_Q, PRESETS
from clustercam.methods.presets import PRESET_FIGURES, SPECTRAL_OPTIONS

LOCALES = Path(__file__).resolve().parent / "locales"
#: The reference language: its file defines the keys, and a request asking for none gets it.
DEFAULT_LANGUAGE = "en"
#: The cookie that carries the language the page is shown in to the server.
COOKIE = "clustercam-lang"
#: Values fixed when the page is built, written into the strings where ``{{name}}`` stands (a
#: value that is a word is a key of the table, said in the string's language).
CONSTANTS = {
    "default_preset": DEFAULT_PRESET,
    "default_q": str(DEFAULT_Q),
    "default_beta": f"{DEFAULT_BETA:g}",
    "spectral_similarity": f"controls.similarity_word.{SPECTRAL_OPTIONS['similarity']}",
}


def _load() -> dict[str, dict[str, str]]:
    """``{language: {key: text}}`` from ``locales/*.yaml``, the reference language first."""
    table: dict[str, dict[str, str]] = {}
    for path in sorted(LOCALES.glob("*.yaml"), key=lambda p: (p.stem != DEFAULT_LANGUAGE, p.stem)):
        strings = yaml.safe_load(path.read_text(encoding="utf-8"))
        table[path.stem] = {str(key): str(value).rstrip("\n") for key, value in strings.items()}
    return table


#: Every string, by language then key.
STRINGS: dict[str, dict[str, str]] = _load()
LANGUAGES: tuple[str, ...] = tuple(STRINGS)


def _with_constants(text: str, language: str) -> str:
    for name, value in CONSTANTS.items():
        if "{{" + name + "}}" in text:
            word = STRINGS[language].get(value, STRINGS[DEFAULT_LANGUAGE].get(value, value))
            text = text.replace("{{" + name + "}}", word)
    return text


def preset_label(name: str, language: str = DEFAULT_LANGUAGE) -> str:
    """A preset as its menu shows it: name — what it computes · its figures on the tuning part."""
    strings = STRINGS[language]
    label = f"{name} — {strings.get(f'preset.{name}', STRINGS[DEFAULT_LANGUAGE].get(f'preset.{name}', ''))}".rstrip(" —")
    note = PRESET_FIGURES.get(name)
    if note and "gradcam" in note:
        label += " · " + strings["preset.measured"].format(
            drop=note["average_drop"], gradcam_drop=note["gradcam"]["average_drop"],
            share=note["pair_share"], gradcam_share=note["gradcam"]["pair_share"],
        )
    return label


def _page(language: str) -> dict[str, str]:
    """The strings the browser translates: the table with the build-time values written in, and
    the keys made from data (each preset's menu entry)."""
    page = {key: _with_constants(text, language) for key, text in STRINGS[language].items()}
    page.update({f"preset_choice.{name}": preset_label(name, language) for name in PRESETS})
    return page


#: Gradio's translations: pass to ``demo.launch(i18n=I18N)``.
I18N = gr.I18n(**{language: _page(language) for language in LANGUAGES})


def T(key: str) -> Any:
    """A static string of the page, translated in the browser (a Gradio ``I18n`` key)."""
    if key not in I18N.translations_dict[DEFAULT_LANGUAGE]:
        raise KeyError(f"No string {key!r} in {LOCALES / (DEFAULT_LANGUAGE + '.yaml')}.")
    return I18N(key)


def best_language(wanted: str | None) -> str:
    """The best of :data:`LANGUAGES` for an ``Accept-Language`` value or a language tag
    (``"es-ES,es;q=0.9,en;q=0.8"`` → ``"es"``; ``"zh-CN"`` → ``"zh"``); English when none fits."""
    choices: list[tuple[float, int, str]] = []
    for order, part in enumerate((wanted or "").split(",")):
        tag, _, parameters = part.strip().partition(";")
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            choices.append((-quality, order, tag.strip().lower()))
    for _, _, tag in sorted(choices):
        primary = tag.split("-")[0]
        if primary in STRINGS:
            return primary
    return DEFAULT_LANGUAGE


def request_language(request: Any = None) -> str:
    """The language of ``request`` (default: the request Gradio is serving in this thread): the
    page's language cookie, else ``Accept-Language``, else English (no request: English)."""
    if request is None:
        request = LocalContext.request.get(None)
    if request is None:
        return DEFAULT_LANGUAGE
    try:
        cookie = (getattr(request, "cookies", None) or {}).get(COOKIE)
        if cookie:
            return best_language(cookie)
        headers = getattr(request, "headers", None) or {}
        return best_language(headers.get("accept-language"))
    except Exception:  # a request without headers (a test's, a pickled one): the default
        return DEFAULT_LANGUAGE


def say(key: str, language: str | None = None, **values: Any) -> str:
    """The string ``key`` in ``language`` (default: the request's), ``{placeholders}`` filled
    from ``values``."""
    language = language or request_language()
    language = language if language in STRINGS else DEFAULT_LANGUAGE
    text = STRINGS[language].get(key)
    if text is None:
        text = STRINGS[DEFAULT_LANGUAGE][key]  # KeyError for a key no file has: a bug, not a user's
    text = _with_constants(text, language)
    return text.format(**values) if values else text


#: Page script: keep the language the page is shown in (Gradio's, from the browser or its
#: settings) in a cookie, so that what the server writes is in the same language.
REMEMBER_LANGUAGE = """() => {
  const remember = () => {
    const language = document.documentElement.lang || navigator.language || 'en';
    document.cookie = `COOKIE=${encodeURIComponent(language)}; path=/; max-age=31536000; SameSite=Lax`;
  };
  remember();
  new MutationObserver(remember).observe(document.documentElement, {attributes: true, attributeFilter: ['lang']});
}""".replace("COOKIE", COOKIE)
