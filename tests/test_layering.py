"""The layers of docs/architecture.md, kept by a test: the pure packages (core, the two rule
sets, the loop's state machine) import no I/O, and each shell part imports only what is below
it. Read from the source (every import statement, also inside functions) and checked once more
at run time (what importing a pure module really loads)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rr_service"

PURE = ("rr_service.core", "rr_service.calico", "rr_service.loop")
# Modules that talk to the world: none of them may be imported by the pure layers.
IO_MODULES = ("etcd3", "grpc", "kubernetes", "urllib3", "socket", "subprocess", "sdnotify", "http", "ssl",
              "threading", "prometheus_client", "rr_service.sources", "rr_service.bird", "rr_service.app")
# Which rr_service packages each layer may use.
ALLOWED = {
    "rr_service.core": ("rr_service.core",),
    "rr_service.calico": ("rr_service.core", "rr_service.calico"),
    "rr_service.loop": ("rr_service.core", "rr_service.loop"),
    "rr_service.sources": ("rr_service.core", "rr_service.calico", "rr_service.sources"),
    "rr_service.bird": ("rr_service.core", "rr_service.bird"),
}
CLIENT_LIBRARIES = {"etcd3": "rr_service.sources.etcd", "grpc": "rr_service.sources.etcd",
                    "kubernetes": "rr_service.sources.kubernetes", "urllib3": "rr_service.sources.kubernetes"}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}: relative import; write rr_service.* in full")
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def within(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("name, path", list(modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_import_respects_the_layers(name, path):
    layer = next((p for p in ALLOWED if within(name, (p,))), None)
    for imported in imports(path):
        top = imported.split(".")[0]
        if within(name, PURE):
            assert not within(imported, IO_MODULES), f"{name} (pure) imports {imported}"
        if layer is not None and imported.startswith("rr_service.") and imported != "rr_service.__version__":
            assert within(imported, ALLOWED[layer]) or imported == "rr_service", f"{name} imports {imported}"
        if top in CLIENT_LIBRARIES:
            assert within(name, (CLIENT_LIBRARIES[top],)), f"{name} imports the client library {top}"


def test_importing_the_pure_layers_loads_no_io():
    code = ("import sys\n"
            "import rr_service.loop, rr_service.core.pipeline, rr_service.core.status\n"
            "import rr_service.calico.v1.ruleset, rr_service.calico.v3.ruleset, rr_service.calico.v3.register\n"
            "print('\\n'.join(sorted(sys.modules)))\n")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    forbidden = [m for m in loaded.split() if within(m, ("etcd3", "grpc", "kubernetes", "urllib3", "sdnotify",
                                                          "rr_service.sources", "rr_service.bird", "rr_service.app"))]
    assert forbidden == []


def test_help_works_without_any_datastore_client(tmp_path):
    """`calico-rr --help` and the settings never need etcd3 (or grpc) installed."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nfor name in ('etcd3', 'grpc', 'kubernetes'):\n    sys.modules[name] = None\n")
    for args in (["--help"], ["render", "--help"], ["register", "--help"]):
        result = subprocess.run([sys.executable, "-m", "rr_service", *args], cwd=ROOT, capture_output=True, text=True,
                                env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"})
        assert result.returncode == 0, result.stderr
