"""The layering rules of DESIGN.md, checked by import-linter (contracts in pyproject.toml), and
the one module that imports libvirt, which no contract covers."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _lint_imports() -> subprocess.CompletedProcess[str]:
    lint_imports = pathlib.Path(sys.executable).parent / "lint-imports"
    return subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_every_import_contract_is_kept_among_them_pika_behind_the_amqp_adapter():
    result = _lint_imports()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    # Contract names wrap in the report: compare words.
    report = " ".join(result.stdout.split())
    assert "Only the AMQP adapter imports pika KEPT" in report, result.stdout


def test_libvirt_is_imported_by_one_adapter_module():
    importers: list[str] = []
    for package in ("operator", "node-agent"):
        for path in (ROOT / package).rglob("*.py"):
            if _imports(path, "libvirt"):
                importers.append(str(path.relative_to(ROOT)))
    assert len(importers) == 1, importers


def _imports(path: pathlib.Path, module: str) -> bool:
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped in (f"import {module}", f"import {module}.exceptions"):
            return True
        if stripped.startswith(f"from {module} import"):
            return True
    return False
