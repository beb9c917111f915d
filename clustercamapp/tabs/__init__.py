"""The page's tabs: each module builds its components over the shared
:class:`~clustercamapp.controls.Controls` and wires its own listeners and handlers.

To add a tab: write a module here with a class whose ``__init__(controls)`` builds it, and add
one line to ``app.py``'s ``build_page``.
"""
