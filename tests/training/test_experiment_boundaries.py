"""The experiment runner consumes GAN pools as files: `training/experiments` never imports `training/gan`."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _gan_imports(path: Path) -> list[str]:
    """Imports of training.gan in ``path`` (at any depth), and string literals naming it (importlib)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.append(node.value)
    return [name for name in names if name == "training.gan" or name.startswith("training.gan.")]


def test_no_experiment_module_names_training_gan():
    offenders = {p.name: _gan_imports(p) for p in sorted((REPO / "training/experiments").rglob("*.py"))}
    assert offenders and not {name: found for name, found in offenders.items() if found}


def test_importing_the_experiment_runner_loads_no_gan_module():
    probe = (
        "import sys, training.experiments.runner, training.experiments.report, training.experiments.sources\n"
        "loaded = [m for m in sys.modules if m == 'training.gan' or m.startswith('training.gan.')]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
