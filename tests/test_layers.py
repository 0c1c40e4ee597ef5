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
LINT = ("from importlinter.cli import lint_imports_command; lint_imports_command()",)


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``tree`` (found there first), with the contract of its pyproject."""
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", *LINT, "--no-cache"], cwd=tree, env=env, capture_output=True,
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


def test_an_upward_import_breaks_the_build_and_says_where(copy: Path) -> None:
    append(copy / "rag" / "core" / "errors.py", "from rag.engine import Engine  # noqa")
    done = lint(copy)
    assert done.returncode != 0
    assert "rag.core is not allowed to import rag.engine" in done.stdout
    assert "rag.core.errors -> rag.engine" in done.stdout
    assert "docs/ARCHITECTURE.md" in done.stdout  # the guidance says where the rule is explained


def test_ingestion_and_answering_stay_apart(copy: Path) -> None:
    append(copy / "rag" / "ingestion" / "chunking.py", "import rag.answering.prompts  # noqa")
    done = lint(copy)
    assert done.returncode != 0
    assert "rag.ingestion is not allowed to import rag.answering" in done.stdout


def test_an_interface_importing_a_provider_breaks_the_build(copy: Path) -> None:
    append(copy / "rag" / "models" / "embedder.py", "import rag.models.providers.ollama  # noqa")
    done = lint(copy)
    assert done.returncode != 0
    assert "rag.models.embedder is not allowed to import rag.models.providers" in done.stdout


def test_one_provider_importing_another_breaks_the_build(copy: Path) -> None:
    append(copy / "rag" / "models" / "providers" / "ollama.py", "import rag.models.providers.openai  # noqa")
    done = lint(copy)
    assert done.returncode != 0
    assert "rag.models.providers.ollama is not allowed to import rag.models.providers.openai" in done.stdout


def test_a_circle_breaks_the_build(copy: Path) -> None:
    # Two lowest-layer siblings importing each other: only the circle contract stands in the way.
    append(copy / "rag" / "core" / "errors.py", "import rag.core.records  # noqa")
    append(copy / "rag" / "core" / "records.py", "import rag.core.errors  # noqa")
    done = lint(copy)
    assert done.returncode != 0
    assert "No import circles, at any depth BROKEN" in done.stdout
    assert "rag.core.errors" in done.stdout and "rag.core.records" in done.stdout


def test_the_engine_never_imports_gradio(copy: Path) -> None:
    append(copy / "rag" / "engine.py", "import gradio  # noqa")
    done = lint(copy)
    assert done.returncode != 0
    assert "rag is not allowed to import gradio" in done.stdout


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
