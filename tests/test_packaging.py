"""Packaging for the places the app runs: Hugging Face Spaces (README front matter, requirements.txt) and Docker.

Spaces reads the YAML at the top of README.md and installs requirements.txt; pip reads pyproject.toml. These tests
keep them saying the same thing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent


def _project() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(lines: list[str]) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in lines]
    return {re.sub(r"[-_.]+", "-", r.name).lower(): r for r in reqs}


def _front_matter() -> dict[str, Any]:
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n"), "README.md must start with the Spaces YAML front matter"
    return yaml.safe_load(text.split("\n---\n", 1)[0].removeprefix("---\n"))


def test_requirements_txt_matches_pyproject() -> None:
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    listed = _requirements([line for line in lines if line and not line.startswith("-")])
    declared = _requirements(_project()["dependencies"])
    assert sorted(listed) == sorted(declared), "requirements.txt and pyproject.toml list different packages"
    for name, req in declared.items():
        assert (listed[name].specifier, listed[name].extras, listed[name].marker) == \
            (req.specifier, req.extras, req.marker), f"{name}: requirements.txt says {listed[name]}, pyproject {req}"


def test_spaces_front_matter_agrees_with_the_project() -> None:
    meta = _front_matter()
    assert meta["title"] == "Pagewise" and meta["sdk"] == "gradio" and meta["emoji"]
    assert {"colorFrom", "colorTo"} <= set(meta)
    gradio = _requirements(_project()["dependencies"])["gradio"]
    pinned = [spec.version for spec in gradio.specifier if spec.operator == "=="]
    assert pinned == [meta["sdk_version"]], "sdk_version must be the gradio version pinned in pyproject.toml"
    assert (ROOT / meta["app_file"]).is_file()
    assert isinstance(meta["python_version"], str)  # quoted: YAML would read 3.10 as 3.1
    assert meta["python_version"] in SpecifierSet(_project()["requires-python"])
    assert meta["license"] == _project()["license"].lower()
    assert len(meta["short_description"]) <= 60  # the Hub refuses longer ones


def test_spaces_preloads_the_default_in_process_models() -> None:
    from rag.core.config import Settings

    s = Settings.from_env({})
    assert {s.local_embed_model, s.local_chat_model, s.rerank_model} <= set(_front_matter()["preload_from_hub"])


def test_ci_still_finds_the_readme_test_command() -> None:
    if shutil.which("awk") is None:
        pytest.skip("awk is not installed")
    script = (ROOT / ".ci" / "run").read_text()
    awk = re.search(r"awk '([^']+)' README.md", script)
    assert awk, ".ci/run no longer extracts the test command with awk"
    command = subprocess.run(["awk", awk.group(1), "README.md"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
    assert "pytest" in command and "pip install" in command


def test_dockerfile_runs_ollama_and_the_app() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "download.pytorch.org/whl/cpu" in dockerfile  # the CPU build of torch, not the multi-GB CUDA one
    assert "requirements.txt" in dockerfile and "EXPOSE 7860" in dockerfile
    entrypoint = ROOT / "docker" / "entrypoint.sh"
    assert "docker/entrypoint.sh" in dockerfile and entrypoint.stat().st_mode & 0o111
    script = entrypoint.read_text()
    assert "ollama serve" in script and "ollama pull" in script and "python app.py" in script
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(entrypoint)], check=True)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"data/", "bench/.cache", "test-artifacts", ".git"} <= set(ignored)


def test_readme_links_the_deployment_guide() -> None:
    assert "(docs/DEPLOYMENT.md)" in (ROOT / "README.md").read_text()
    guide = (ROOT / "docs" / "DEPLOYMENT.md").read_text()
    for topic in ("RAG_AUTH", "SPACE", "/data", "ZeroGPU", "docker run", "chroma run", "RAG_CHROMA_HOST",
                  "RAG_OLLAMA_TOKEN", "sticky"):
        assert topic in guide, topic


def test_the_ocr_engines_system_libraries_are_installed_wherever_the_app_runs() -> None:
    needed = {"libgl1", "libglib2.0-0"}  # OpenCV's, for RapidOCR
    assert needed <= set((ROOT / "packages.txt").read_text().split())  # Hugging Face Spaces installs these
    for place in (ROOT / "Dockerfile", ROOT / ".ci" / "run"):
        assert all(lib in place.read_text() for lib in needed), place.name


# Imported by the product but not declared, each for a reason: present only where it is used, or checked for at
# run time with a message saying what to install.
OPTIONAL_IMPORTS = {
    "spaces": "only on Hugging Face Spaces (ZeroGPU); rag.models.accel works without it",
    "cv2": "OpenCV, for the Tesseract engine only; RapidOCR brings it, and rag.ingestion.ocr names it when missing",
    "huggingface_hub": "comes with transformers; rag.models.hub only asks it whether a model is cached",
}


def _product_imports() -> dict[str, set[str]]:
    """Top-level third-party modules that rag/, ui/ and app.py import (at any depth, lazily too) → the files."""
    import ast
    import sys

    found: dict[str, set[str]] = {}
    for path in [*(ROOT / "rag").rglob("*.py"), *(ROOT / "ui").rglob("*.py"), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in {"rag", "ui", "__future__"} and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_dependencies_are_exactly_what_the_product_imports() -> None:
    from importlib.metadata import packages_distributions

    dists = {module: {re.sub(r"[-_.]+", "-", d).lower() for d in names}
             for module, names in packages_distributions().items()}
    imported = _product_imports()
    declared = set(_requirements(_project()["dependencies"]))
    provided = {module: dists.get(module, set()) & declared for module in imported}
    undeclared = {m: sorted(files) for m, files in imported.items() if not provided[m] and m not in OPTIONAL_IMPORTS}
    assert not undeclared, f"imported by the product but not in [project] dependencies: {undeclared}"
    used = set().union(*provided.values())
    assert declared - used == set(), (f"declared but never imported by rag/, ui/ or app.py: {declared - used}; "
                                      "move them to the extra that uses them (test, bench)")
