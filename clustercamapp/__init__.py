"""The Cluster-CAM web app's layer over the :mod:`clustercam` library (``app.py`` assembles it).

The library never imports Gradio; this package is the only place besides ``app.py`` that does.

- :mod:`clustercamapp.controls`: the controls every tab shares (built once) and their listeners;
- :mod:`clustercamapp.settings`: the shared values parsed once into a :class:`~clustercamapp.settings.Settings`;
- :mod:`clustercamapp.tabs`: one module per tab, each building its components and wiring its
  listeners, whose handlers return ``{component: value}``;
- :mod:`clustercamapp.drawing`: pure drawing (explanations in, pictures, captions, tables out);
- :mod:`clustercamapp.files`: serving them (response folders, PNG and ``.npy`` files, the zip);
- :mod:`clustercamapp.engine`: models loaded once, a lock per model, a bounded cache of
  explanations, concurrency limits; :mod:`clustercamapp.memory`: allocator settings;
- :mod:`clustercamapp.style` and :mod:`clustercamapp.text`: the look and the prose.
"""
