"""The layering contract (pyproject.toml, [tool.importlinter]) holds, and breaks readably when code breaks it.

The contract: rag's packages are layered by stage and import only downwards; each package is layered inside; the
providers don't import each other; rag never imports ui or Gradio; there are no import circles at any depth.
``lint-imports`` checks it; these tests run it on the real tree, and on copies with one bad change each, so that a
contract that has silently stopped checking anything would fail here too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``tree`` (found there first), with the contract of its pyproject."""
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache"], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The packages and the contract, copied to change freely."""
    for name in ("rag", "ui"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_the_tree_keeps_every_contract() -> None:
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
    assert "No import circles, at any depth KEPT" in done.stdout


# (file in rag/, line appended to it, what the failure must say): one rule of the contract each.
BREAKS = {
    "upward": ("core/errors.py", "from rag.engine import Engine", "rag.core is not allowed to import rag.engine"),
    "across": ("ingestion/chunking.py", "import rag.answering.prompts",
               "rag.ingestion is not allowed to import rag.answering"),
    "interface-to-provider": ("models/embedder.py", "import rag.models.providers.ollama",
                              "rag.models.embedder is not allowed to import rag.models.providers"),
    "provider-to-provider": ("models/providers/ollama.py", "import rag.models.providers.openai",
                             "rag.models.providers.ollama is not allowed to import rag.models.providers.openai"),
    "gradio": ("engine.py", "import gradio", "rag is not allowed to import gradio"),
}


@pytest.mark.parametrize("rule", BREAKS)
def test_a_broken_rule_fails_the_build_and_says_where(copy: Path, rule: str) -> None:
    path, line, message = BREAKS[rule]
    append(copy / "rag" / path, f"{line}  # noqa")
    done = lint(copy)
    assert done.returncode != 0
    assert message in done.stdout
    module = "rag." + path.removesuffix(".py").replace("/", ".")
    assert f"{module} -> " in done.stdout  # the offending import is named, with its line
    if rule == "upward":
        assert "docs/ARCHITECTURE.md" in done.stdout  # the guidance says where the rule is explained


def test_a_circle_breaks_the_build(copy: Path) -> None:
    # Two siblings importing each other: the circle contract names it as a circle, whatever the layers say.
    append(copy / "rag" / "core" / "errors.py", "import rag.core.records  # noqa")
    append(copy / "rag" / "core" / "records.py", "import rag.core.errors  # noqa")
    done = lint(copy)
    assert done.returncode != 0
    assert "No import circles, at any depth BROKEN" in done.stdout
    assert "rag.core.errors" in done.stdout and "rag.core.records" in done.stdout


def test_a_new_module_must_be_given_a_layer(copy: Path) -> None:
    (copy / "rag" / "search" / "vectors.py").write_text('"""A module nobody placed."""\n', encoding="utf-8")
    done = lint(copy)
    assert done.returncode != 0
    assert "rag.search.vectors" in done.stdout + done.stderr


def test_each_package_says_what_it_owns_and_what_it_may_import() -> None:
    for init in sorted((ROOT / "rag").glob("*/__init__.py")) + sorted((ROOT / "rag").glob("*/*/__init__.py")):
        text = init.read_text(encoding="utf-8")
        assert text.startswith('"""'), f"{init.relative_to(ROOT)} has no docstring"
        if init.parent.name != "core":  # the base imports nothing of rag
            assert "May import:" in text, f"{init.relative_to(ROOT)} doesn't say which packages it may import"


def test_a_script_needs_only_the_package_and_a_stage_loads_only_what_it_imports() -> None:
    code = ("import sys, rag.ingestion.workers; light = not {'rag.engine', 'rag.search.store', 'chromadb'} & "
            "set(sys.modules); from rag import Engine, Settings; "
            "print(light, Engine.__module__, Settings.__module__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=True)
    assert done.stdout.split() == ["True", "rag.engine", "rag.core.config"]
