"""The import contract: data flows one way, and the pipeline knows nothing of Jupyter.

`completion/` (request -> context -> prompt -> engine -> post-processing -> reply) must run in a
plain Python process: no jupyter_server, tornado, IPython or traitlets. The packages import one
way: tools -> server/kernel -> completion -> models -> errors.
"""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "jupyter_codecomp"
FRAMEWORKS = ("jupyter_server", "tornado", "IPython", "traitlets", "ipykernel")
# What each subpackage may import from the others (besides errors.py and itself).
ALLOWED = {
    "models": set(),
    "completion": {"models"},
    "server": {"completion", "models", "kernel", "config"},
    "kernel": {"completion", "models", "config"},
    "tools": {"completion", "models", "kernel", "server", "config"},
}


def imported_packages(path: Path) -> set[str]:
    """The jupyter_codecomp subpackages or top-level modules that `path` imports from outside
    its own subpackage (`from .. import __version__` counts as the package root, "")."""
    depth = len(path.relative_to(PACKAGE).parts) - 1
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level > depth:  # relative, reaching above the module's own subpackage
            found.add((node.module or "").split(".")[0])
        elif not node.level and (node.module or "").startswith("jupyter_codecomp"):
            found.add((node.module.split(".") + [""])[1])
    return found


def test_subpackages_import_one_way():
    wrong = []
    for sub, allowed in ALLOWED.items():
        for path in sorted((PACKAGE / sub).rglob("*.py")):
            extra = imported_packages(path) - allowed - {"errors", "_version", ""}
            if extra:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {sorted(extra)}")
    assert not wrong, "\n".join(wrong)


def test_the_pipeline_loads_without_jupyter_frameworks():
    modules = [f"jupyter_codecomp.completion.{p.stem}"
               for p in sorted((PACKAGE / "completion").glob("*.py")) if p.stem != "__init__"]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FRAMEWORKS!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
