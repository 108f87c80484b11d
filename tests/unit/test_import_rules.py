"""The layering rules of DESIGN.md, checked by import-linter (contracts in pyproject.toml)."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_agent_never_imports_the_database_layer_or_kopf():
    lint_imports = pathlib.Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_pika_and_libvirt_are_each_imported_by_one_adapter_module():
    importers: dict[str, list[str]] = {"pika": [], "libvirt": []}
    for path in (ROOT / "operator").rglob("*.py"):
        _collect(path, importers)
    for path in (ROOT / "node-agent").rglob("*.py"):
        _collect(path, importers)
    assert [p.split("/")[-1] for p in importers["pika"]] == ["amqp.py"], importers["pika"]
    assert len(importers["libvirt"]) == 1, importers["libvirt"]


def _collect(path: pathlib.Path, importers: dict[str, list[str]]) -> None:
    for line in path.read_text().splitlines():
        stripped = line.strip()
        for module, paths in importers.items():
            imports_it = stripped in (f"import {module}", f"import {module}.exceptions")
            imports_it = imports_it or stripped.startswith(f"from {module} import")
            if imports_it and str(path) not in paths:
                paths.append(str(path))
