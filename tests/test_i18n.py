"""The page in the class's language: one table of strings, complete in every language.

- every ``locales/<language>.yaml`` has exactly English's keys, the same ``{placeholders}`` (with
  their formats) and the same build-time ``{{values}}``; every key is used by the code;
- every text the built page shows comes from the table (a translation key), none is written in
  the code;
- what a handler writes follows the request's language (cookie, else ``Accept-Language``), in
  the handlers themselves and through a real server with ``gradio_client``; a request asking for
  nothing gets English.

The rendering of the page in each language (no overflow at 1280×720 and 390×844, screenshots) is
in ``test_app_browser.py``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
from gradio.context import LocalContext

from clustercamapp import i18n
from clustercamapp.i18n import (
    COOKIE,
    DEFAULT_LANGUAGE,
    LANGUAGES,
    STRINGS,
    best_language,
    request_language,
    say,
)

from .conftest import ASSETS, ROOT, free_port

#: A ``{placeholder}`` (with its format) or a build-time ``{{value}}``.
FIELD = re.compile(r"\{\{[a-z_]+\}\}|\{[a-z_]+(?:[:!][^{}]*)?\}")
#: Keys the code builds from a family name and a value (``f"drawing.role.{key}"``, …).
FAMILIES = (
    "preset.", "explain.example.", "walk.step", "walk.paper", "walk.sentence", "checks.accepts.", "drawing.role.",
    "drawing.where.", "drawing.end.", "compare.column.", "sweeps.what.", "sweeps.progress.", "sweeps.advice.",
    "controls.similarity_",
)
#: A few words each language must use where English uses the key's (proof that it is translated).
SAMPLES = {"es": {"page.tab.walk": "Paso a paso", "controls.explain": "Explicar"},
           "zh": {"page.tab.walk": "逐步讲解", "controls.explain": "解释"}}


def fields(text: str) -> list[str]:
    return sorted(FIELD.findall(text))


def test_english_spanish_and_chinese_are_complete():
    assert set(LANGUAGES) >= {"en", "es", "zh"} and LANGUAGES[0] == DEFAULT_LANGUAGE
    english = STRINGS[DEFAULT_LANGUAGE]
    assert len(english) > 200
    for language in LANGUAGES:
        strings = STRINGS[language]
        assert set(strings) == set(english), (language, set(english) ^ set(strings))
        for key, text in english.items():
            assert strings[key].strip(), (language, key)
            assert fields(strings[key]) == fields(text), (language, key, fields(strings[key]), fields(text))
        for key, word in SAMPLES.get(language, {}).items():
            assert word in strings[key], (language, key)


def test_every_dynamic_string_formats_in_every_language():
    """Each string with placeholders formats with values of the right kinds in every language (a
    format a translation got wrong raises here, not in front of a class)."""
    for key, text in STRINGS[DEFAULT_LANGUAGE].items():
        if "$" in text:  # a note with equations: shown as built, never formatted
            continue
        names = {field.strip("{}").split(":")[0].split("!")[0] for field in fields(text) if not field.startswith("{{")}
        if not names:
            continue
        values = {name: 1234 for name in names}
        for language in LANGUAGES:
            out = say(key, language, **values)
            assert "1" in out and "{" not in out.replace("{{", ""), (language, key, out)


def test_every_key_is_used_by_the_code():
    sources = "\n".join(path.read_text(encoding="utf-8") for path in [
        *sorted((ROOT / "clustercamapp").rglob("*.py")), ROOT / "app.py",
    ])
    unused = [key for key in STRINGS[DEFAULT_LANGUAGE]
              if f'"{key}"' not in sources and not key.startswith(FAMILIES)]
    assert unused == []


@pytest.mark.parametrize(("wanted", "language"), [
    ("es-ES,es;q=0.9,en;q=0.8", "es"), ("zh-CN,zh;q=0.9", "zh"), ("zh-TW", "zh"), ("fr-FR,fr;q=0.9,es;q=0.5", "es"),
    ("en-US,en;q=0.9,es;q=0.8", "en"), ("de-DE", "en"), ("", "en"), (None, "en"), ("es;q=0, zh;q=0.4", "zh"),
    ("ES", "es"), ("*", "en"), ("es;q=abc", "en"),
])
def test_the_best_language_for_what_the_browser_asks(wanted, language):
    assert best_language(wanted) == language


@contextmanager
def serving(headers: dict | None = None, cookies: dict | None = None) -> Iterator[None]:
    """Run the block as Gradio runs a listener: with the request in its context."""
    request = gr.Request(headers=headers or {}, cookies=cookies or {})
    token = LocalContext.request.set(request)
    try:
        yield
    finally:
        LocalContext.request.reset(token)


def test_the_request_chooses_the_language_and_nothing_is_kept_between_requests():
    assert request_language() == "en"  # no request: English
    with serving({"accept-language": "es-ES,es;q=0.9"}):
        assert request_language() == "es" and say("compare.yes") == "sí"
    assert request_language() == "en"
    with serving({"accept-language": "es"}, {COOKIE: "zh-CN"}):  # the page's language wins
        assert request_language() == "zh" and say("compare.yes") == "是"
    with serving({"accept-language": "zh"}, {COOKIE: ""}):
        assert request_language() == "zh"


@pytest.fixture(scope="module")
def page():
    import app

    return app.page


def text_props(config: dict) -> Iterator[tuple[dict, str, str]]:
    """``(component, prop, text)`` for every text the page shows as built (a translation key is
    Gradio's ``I18nData`` here, its ``__i18n__`` marker once sent to the browser)."""

    def text(value: object) -> str | None:
        if isinstance(value, gr.i18n.I18nData):
            return str(value)
        return value if isinstance(value, str) and value else None

    for component in config["components"]:
        if component["type"] in ("api", "state"):  # not on the page (gr.api endpoints, session state)
            continue
        props = component.get("props", {})
        for name in ("label", "info", "placeholder"):
            if text(props.get(name)):
                yield component, name, text(props[name])
        if component["type"] in ("markdown", "button", "deeplinkbutton") and text(props.get("value")):
            yield component, "value", text(props["value"])
        for choice in props.get("choices") or []:
            if isinstance(choice, (list, tuple)) and text(choice[0]):
                yield component, "choices", text(choice[0])


#: Menus whose entries are data, the same in every language (model names, layer names, class
#: names as ImageNet has them, method titles, colormap names).
DATA_MENUS = {"model", "layer", "colormap", "target", "class-a", "class-b", "compare-methods"}


def test_every_text_of_the_page_comes_from_the_table(page):
    """No label, help, note, button or menu entry is written in the code: each is a translation key
    (in the page's config, Gradio's ``__i18n__`` marker) that exists in the table."""
    config = page.demo.get_config_file()
    english = i18n.I18N.translations_dict[DEFAULT_LANGUAGE]
    checked, written = 0, []
    for component, prop, shown in text_props(config):
        if prop == "choices" and component.get("props", {}).get("elem_id") in DATA_MENUS and "__i18n__" not in shown:
            continue
        match = re.search(r'__i18n__\{"__type__": "translation_metadata", "key": "([^"]+)"\}', shown)
        if match is None:
            written.append((component["type"], component.get("props", {}).get("elem_id"), prop, shown[:60]))
        else:
            assert match.group(1) in english, match.group(1)
            checked += 1
    assert written == []
    assert checked > 100
    # the page passes the table to Gradio (the browser translates from it)
    assert config["i18n_translations"] is None or set(config["i18n_translations"]) >= {"en", "es", "zh"}


def test_the_handlers_write_in_the_requests_language(page):
    """Explain, its redraw and the step-by-step sentences, then a mistake, in Spanish and Chinese;
    the same calls without a language are in English."""
    tab, walk = page.explain, page.walk
    pair = str(ASSETS / "cat_and_coffee.jpg")
    words = {"en": ("Explained class:", "cluster", "Confidence kept"), "es": ("Clase explicada:", "grupo", "Confianza conservada"),
             "zh": ("被解释的类别", "聚类", "保留的置信度")}
    for language, (summary, tile, kept) in words.items():
        with serving({"accept-language": language}):
            out = tab.on_explain(pair, "efficientnet_lite0", "", 6, 0.7)
            assert summary in out[tab.summary_md], (language, out[tab.summary_md])
            assert all(caption.startswith(tile) for _, caption in out[tab.clusters]), out[tab.clusters]
            assert kept in out[tab.tradeoff_md]
            assert out[tab.scores_table].columns[0] == say("drawing.column.cluster", language)
            moved = tab.on_reweight(0.0, out[tab.session])
            assert moved[tab.beta_note] == say("drawing.beta_zero", language)
            steps = walk.on_walk(pair, "efficientnet_lite0", "", 6, 0.7)
            assert say("walk.sentence4", language, name="X", base=0, scissors=0, best=0, worst=0).split("X")[0] \
                in steps[walk.sentences[3]]
            with pytest.raises(gr.Error) as error:
                tab.on_explain(None, "efficientnet_lite0")
            assert say("errors.no_image", language) in error.value.message
            with pytest.raises(gr.Error) as error:
                tab.on_explain(pair, "efficientnet_lite0", "", [1, 2])
            assert error.value.message.startswith("q") and say("checks.accepts.q", language) in error.value.message


def test_a_client_asking_for_a_language_gets_its_messages_in_it():
    """Through a real server: ``gradio_client`` with ``Accept-Language`` gets the app's error in that
    language; without the header, English (what scripts written against the API see)."""
    from gradio_client import Client, handle_file

    import app

    _, url, _ = app.demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                                **app.launch_options())
    try:
        photo = handle_file(str(ASSETS / "chelsea.jpg"))
        for headers, expected in (({"Accept-Language": "zh-CN,zh;q=0.9"}, "zh"), ({"Accept-Language": "es"}, "es"),
                                  (None, "en")):
            client = Client(url, verbose=False, download_files=False, headers=headers)
            with pytest.raises(Exception) as error:
                client.predict(photo, "efficientnet_lite0", "no-such-layer", api_name="/explain")
            assert say("errors.unknown_layer", expected, layer="no-such-layer", model="efficientnet_lite0", count=1,
                       default="x", hint="").split("'")[0] in str(error.value), (expected, str(error.value))
    finally:
        app.demo.close()

