"""Assemble a Hugging Face Space from this repository: ``python space/prepare.py KIND OUT``.

``KIND`` is ``zerogpu`` (a Gradio-SDK Space on ZeroGPU hardware: ``space/zerogpu/README.md`` as
its card and ``space/zerogpu/requirements.txt`` as its requirements) or ``docker`` (the CPU image
of the ``Dockerfile``: ``space/README.md`` as its card). ``OUT`` receives the card as
``README.md``, the requirements, the app (``app.py``, ``clustercamapp/``), the library
(``clustercam/``), the example photographs (``assets/``) and, for Docker, the ``Dockerfile`` and
``pyproject.toml``; push it to a new Space of that kind.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ("app.py", "clustercam", "clustercamapp", "assets", "LICENSE")
KINDS = {
    "zerogpu": {"card": "space/zerogpu/README.md", "requirements": "space/zerogpu/requirements.txt", "more": ()},
    "docker": {"card": "space/README.md", "requirements": "requirements.txt",
               "more": ("Dockerfile", ".dockerignore", "pyproject.toml")},
}
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def prepare(kind: str, out: Path) -> list[str]:
    """Write the Space into ``out`` (which must be empty or new); the names written."""
    if kind not in KINDS:
        raise ValueError(f"KIND must be one of {', '.join(KINDS)}; got {kind!r}.")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty.")
    out.mkdir(parents=True, exist_ok=True)
    spec = KINDS[kind]
    for name in (*SHARED, *spec["more"]):
        source = ROOT / name
        target = out / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=IGNORED)
        else:
            shutil.copy2(source, target)
    shutil.copy2(ROOT / spec["card"], out / "README.md")
    shutil.copy2(ROOT / spec["requirements"], out / "requirements.txt")
    return sorted(path.name for path in out.iterdir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        written = prepare(args.kind, args.out)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.kind} Space in {args.out}: {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
