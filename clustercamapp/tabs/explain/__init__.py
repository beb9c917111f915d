"""The Explain tab: the heatmap with β and the class beside it, the maps eq. 22 mixes, the clusters
and masked images with a plain-language key, two classes side by side, one zip.

- :mod:`.tab` — the actions (one entry point per thing a visitor does) and their wiring;
- :mod:`.stages` — the path every action runs: explanation → view → pictures → files → outputs;
- :mod:`.outputs` — the one table of which component each part fills, and the parts of each action;
- :mod:`.session` — what the server remembers of a visitor's explanation;
- :mod:`.layout` — the components; :mod:`.examples` — the example buttons and their warm-up.
"""

from .examples import EXAMPLES, default_settings, warm_examples
from .session import ExplainSession
from .tab import ExplainTab

__all__ = ["EXAMPLES", "ExplainSession", "ExplainTab", "default_settings", "warm_examples"]
