"""The documentation site builds strictly: no broken link, no page outside the menu, no bad docstring."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "envs"), str(ROOT), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for page in ("index.html", "api/algos/index.html", "api/vanco_pk/index.html", "ope/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    assert "VancoIQLConfig" in (tmp_path / "site" / "api" / "algos" / "index.html").read_text()
