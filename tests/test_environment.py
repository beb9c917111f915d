"""Settings from the environment: one checked table (clustercam/environment.py), read everywhere
through it, and the README's settings table the same table."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from clustercam import environment
from clustercam.environment import SETTINGS, EnvironmentSettingError

from .conftest import ROOT

#: Source read for environment variables: the library, the explorer and its entry point.
SOURCES = [*sorted((ROOT / "clustercam").rglob("*.py")), *sorted((ROOT / "clustercamapp").rglob("*.py")), ROOT / "app.py"]
#: Variables that are not settings of ours: the system's temporary folder, torchrun's ranks, glibc's
#: allocator variables (only tested for presence, so that one set by the user wins).
NOT_SETTINGS = {"TMPDIR", "WORLD_SIZE", "RANK", "LOCAL_RANK"}


def readme_rows() -> dict[str, tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    start = text.index("| environment variable | default (CPU / GPU) | what it sets |")
    table = text[start:text.index("\n\n", start)].splitlines()[2:]
    rows = {}
    for line in table:
        name, shown, about = (cell.strip() for cell in line.strip("|").split(" | "))
        rows[name.strip("`")] = (shown, about)
    return rows


def test_the_readme_table_is_the_settings_table():
    assert readme_rows() == {setting.name: (setting.shown, setting.about) for setting in SETTINGS.values()}


def test_every_variable_read_is_a_setting_of_the_table_and_every_setting_is_read():
    read_names, direct = set(), []
    for path in SOURCES:
        if path.name == "environment.py" and path.parent.name == "clustercam":
            continue
        text = path.read_text()
        read_names |= set(re.findall(r'environment\.read\(\s*"([A-Z_]+)"', text))
        for name in re.findall(r'os\.(?:environ\.get|getenv)\(\s*"([A-Z_]+)"|os\.environ\[\s*"([A-Z_]+)"\s*\]', text):
            variable = next(part for part in name if part)
            if variable not in NOT_SETTINGS:
                direct.append(f"{path.relative_to(ROOT)}: {variable}")
    assert direct == []  # read through environment.read, checked by kind
    assert read_names <= set(SETTINGS)
    unread = set(SETTINGS) - read_names - {"SPACES_ZERO_GPU", "TORCHINDUCTOR_CACHE_DIR"}  # read by their helpers
    assert unread == set()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CLUSTERCAM_APP_CACHE_SIZE", "lots", "CLUSTERCAM_APP_CACHE_SIZE expects a whole number; got 'lots'."),
        ("CLUSTERCAM_APP_CACHE_SIZE", "0", "CLUSTERCAM_APP_CACHE_SIZE expects a whole number, at least 1; got '0'."),
        ("CLUSTERCAM_APP_STUDY_NICE", "20", "expects a whole number, at least 0 and at most 19; got '20'."),
        ("CLUSTERCAM_APP_CACHE_TTL", "nan", "expects a finite number; got 'nan'."),
        ("CLUSTERCAM_COMPILE", "maybe", "CLUSTERCAM_COMPILE expects a flag (1 / true or 0 / false); got 'maybe'."),
        ("CLUSTERCAM_APP_COMPILE_SHAPES", "round", "expects one of 'common', 'square'; got 'round'."),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused_by_name(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(EnvironmentSettingError, match=re.escape(message)):
        environment.read(name)


def test_values_are_read_by_kind_and_unset_gives_the_default(monkeypatch):
    monkeypatch.setenv("CLUSTERCAM_MAX_PIXELS", " 1_000 ")
    monkeypatch.setenv("CLUSTERCAM_COMPILE", "off")
    monkeypatch.setenv("CLUSTERCAM_APP_TRIM_AFTER", "0.5")
    monkeypatch.setenv("CLUSTERCAM_APP_STUDY_BUDGET", "")
    assert environment.read("CLUSTERCAM_MAX_PIXELS") == 1000 and environment.read("CLUSTERCAM_COMPILE") is False
    assert environment.read("CLUSTERCAM_APP_TRIM_AFTER") == 0.5
    assert environment.read("CLUSTERCAM_APP_STUDY_BUDGET", 400) == 400  # empty: the reader's default
    monkeypatch.delenv("CLUSTERCAM_APP_CACHE_SIZE", raising=False)
    assert environment.read("CLUSTERCAM_APP_CACHE_SIZE") == 32
    with pytest.raises(KeyError):
        environment.read("CLUSTERCAM_NOT_A_SETTING")


@pytest.mark.slow
def test_the_explorer_stops_with_the_message_on_a_mistyped_value():
    environment_variables = {"CLUSTERCAM_APP_CONCURRENCY": "two", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", "import clustercamapp.engine"], cwd=ROOT, env=environment_variables,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "CLUSTERCAM_APP_CONCURRENCY expects a whole number; got 'two'." in done.stderr.splitlines()[-1]
