"""Helpers of the Cluster-CAM web app (``app.py``): model and result caching, rendering, handlers.

The library (:mod:`clustercam`) never imports Gradio; this package is the only place besides
``app.py`` that does (for ``gr.Error``, ``gr.Progress`` and component updates in the handlers).

- :mod:`clustercamapp.engine`: models loaded once per name, a lock per model around network work,
  a bounded LRU of explanations with expiry, per-thread counting of forward passes;
- :mod:`clustercamapp.views`: an explanation → the images, galleries, files and summaries shown;
- :mod:`clustercamapp.handlers`: one function per endpoint (types in, types out, ``gr.Error``);
- :mod:`clustercamapp.text`: the page's prose ("How it works", notes).
"""
