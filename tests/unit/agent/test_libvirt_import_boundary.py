"""Only the hypervisor adapter module imports the libvirt binding."""

from __future__ import annotations

import ast
import pathlib

from kubenova_agent import exceptions

# Located through a module: the package may be installed as a namespace (no __file__).
PACKAGE = pathlib.Path(exceptions.__file__).parent
ADAPTER = PACKAGE / "virt" / "libvirt" / "connection.py"


def imported_modules(path: pathlib.Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # "from a.b import c" may import the module a.b.c: count both.
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def test_only_the_adapter_imports_libvirt():
    importers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(name == "libvirt" or name.startswith("libvirt.") for name in imported_modules(path))
    )
    assert importers == [str(ADAPTER.relative_to(PACKAGE))]


def test_the_test_driver_does_not_import_the_libvirt_driver():
    # Drivers do not import each other; they share virt/libvirt/base.py.
    modules = imported_modules(PACKAGE / "virt" / "testdriver.py")
    assert "kubenova_agent.virt.libvirt.driver" not in modules
