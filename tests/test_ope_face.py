"""The public face of vanco_offline.ope: about ten names, those the docs and examples use."""

from __future__ import annotations

import re
from pathlib import Path

import vanco_offline.ope as ope

ROOT = Path(__file__).resolve().parents[1]


def test_the_public_face_is_small_and_holds_what_the_readme_docs_and_examples_import():
    assert 8 <= len(ope.__all__) <= 12
    assert all(hasattr(ope, name) for name in ope.__all__)
    used = set()
    for path in [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("examples/*.py")]:
        for names in re.findall(r"from vanco_offline\.ope import ([A-Za-z_, ]+)", path.read_text()):
            used |= {n.strip() for n in names.split(",") if n.strip()}
    assert used and used <= set(ope.__all__), sorted(used - set(ope.__all__))
