"""`edge` and `shared` run on a Jetson without torch, and on JetPack 6's Python 3.10."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_PROBE = r"""
import importlib, importlib.abc, pkgutil, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch.") or name in ("torchvision", "segmentation_models_pytorch"):
            raise ImportError(f"{name} may not be imported by edge/shared")
        return None

sys.meta_path.insert(0, NoTorch())
imported = []
for package_name in ("shared", "edge"):
    package = importlib.import_module(package_name)
    imported.append(package_name)
    for info in pkgutil.walk_packages(package.__path__, package_name + "."):
        importlib.import_module(info.name)
        imported.append(info.name)
assert "torch" not in sys.modules
print("\n".join(imported))
"""


def test_every_module_of_edge_and_shared_imports_without_torch():
    result = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    modules = result.stdout.split()
    assert "shared.tiling" in modules and "edge.cli" in modules


def _python310() -> str | None:
    candidates = [*sorted(Path.home().glob(".pyenv/versions/3.10.*/bin/python3.10")), shutil.which("python3.10")]
    for candidate in candidates:
        if candidate and subprocess.run([str(candidate), "--version"], capture_output=True).returncode == 0:
            return str(candidate)
    return None


def test_edge_and_shared_compile_on_python_3_10():
    python = _python310()
    if python is None:
        pytest.skip("needs a Python 3.10 interpreter (JetPack 6's version) on PATH or in ~/.pyenv")
    files = [str(p) for p in (REPO / "edge").rglob("*.py")] + [str(p) for p in (REPO / "shared").rglob("*.py")]
    result = subprocess.run([python, "-m", "py_compile", *files], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _imports_of(package: str) -> dict[str, set[str]]:
    """Module -> every module name it imports: import statements (any depth, also inside functions) and
    string literals that read as a module path (what ``importlib.import_module("...")`` would take)."""
    import ast
    import re

    dotted = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and dotted.fullmatch(node.value):
                names.add(node.value)
        found[path.relative_to(REPO).as_posix()] = names
    return found


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_no_edge_module_imports_training_not_even_through_importlib():
    offenders = {
        module: sorted(name for name in names if _under(name, "training"))
        for module, names in _imports_of("edge").items()
    }
    assert not {module: names for module, names in offenders.items() if names}


def test_training_imports_nothing_from_the_edge_store():
    offenders = {
        module: sorted(name for name in names if _under(name, "edge.store"))
        for module, names in _imports_of("training").items()
    }
    assert not {module: names for module, names in offenders.items() if names}  # contracts live in shared/


def test_importing_every_edge_module_loads_no_training_module():
    probe = _PROBE + "\nassert not [m for m in sys.modules if m == 'training' or m.startswith('training.')]\n"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
