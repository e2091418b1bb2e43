"""The shape of the package (DESIGN.md): floors, fences, one notebook opening, one store-path rule."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "neuronlab"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

#: Each module's floor; a module imports only from its own floor or below.
FLOORS = {"config": 1, "probe": 1, "models": 1, "runs": 1, "plots": 1, "book": 1, "data": 1, "train": 1,
          "classwise": 2,
          "init": 3, "signal": 3, "campaign": 3, "nsr": 3, "regularizers": 3, "cooperating": 3,
          "similarity": 3, "neurons": 3, "rejuvenation": 3,
          "experiments": 4, "exercises": 4,
          "widgets": 5}
METHODS = ("init", "signal", "campaign", "nsr", "regularizers", "cooperating", "similarity", "neurons",
           "rejuvenation", "classwise", "probe")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_imports(path: Path):
    """``(imported module, imported names, line)`` for every import of a neuronlab module in ``path``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "neuronlab":
                continue
            names = [a.name for a in node.names]
            if node.module is None or target == "neuronlab":  # from . import x / from neuronlab import x
                for n in names:
                    yield f"{target}.{n}", [], node.lineno
            else:
                yield target, names, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "neuronlab":
                    yield alias.name, [], node.lineno


def _floor(module: str):
    parts = module.split(".")
    return FLOORS.get(parts[1]) if len(parts) > 1 else None


SOURCES = [p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py"]


def test_every_module_has_a_floor():
    assert SOURCES and [_module_name(p) for p in SOURCES if _floor(_module_name(p)) is None] == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: _module_name(p))
def test_imports_go_down_or_sideways_and_never_take_private_names(path):
    own = _floor(_module_name(path))
    for target, names, line in _package_imports(path):
        floor = _floor(target)
        assert floor is not None and floor <= own, f"{path.name}:{line} imports {target} (floor {floor} > {own})"
        private = [n for n in names if n.startswith("_")]
        assert not private, f"{path.name}:{line} imports private names {private} from {target}"


def test_no_import_circles():
    graph = {}
    for path in SOURCES:
        graph.setdefault(_module_name(path), set()).update(
            t for t, _, _ in _package_imports(path) if t != _module_name(path))
    known = set(graph)

    def resolve(target):  # "neuronlab.data.images" or a name imported from a package
        while target and target not in known:
            target = target.rsplit(".", 1)[0] if "." in target else ""
        return target

    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in {resolve(t) for t in graph.get(node, ())} - {"", node}:
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own submodules
            assert state.get(nxt) != "open", "import circle: " + " -> ".join(trail + [nxt])
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_method_modules_load_no_plotting_widgets_or_experiments():
    code = ("import sys\n"
            + "".join(f"import neuronlab.{m}\n" for m in METHODS)
            + "bad = [m for m in ('matplotlib', 'seaborn', 'ipywidgets', 'neuronlab.experiments') if m in sys.modules]\n"
            + "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"importing the method modules loaded {out.stdout.strip()}"


# ------------------------------------------------------------------------------------------ notebooks
def _code_cells(path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_every_chapter_opens_with_the_same_parameters_cell():
    first = {path.name: _code_cells(path)[0] for path in NOTEBOOKS}
    sources = {name: "".join(cell["source"]) for name, cell in first.items()}
    assert len(set(sources.values())) == 1, "the first code cells differ between chapters"
    assert all("parameters" in cell["metadata"].get("tags", []) for cell in first.values())
    assert "google.colab" in next(iter(sources.values()))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_second_cell_ends_with_the_chapter_setup_line(path):
    number = path.name[:2]
    source = "".join(_code_cells(path)[1]["source"]).strip()
    assert source.splitlines()[-1] == f"SETTINGS, RUN = ch{number}.setup(PROFILE, SEED, RUNS_DIR)"
    assert f"from neuronlab.experiments import ch{number}_" in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_retypes_a_protocol_or_forces_a_device(path):
    for cell in _code_cells(path):
        source = "".join(cell["source"])
        tree = ast.parse("\n".join(l for l in source.splitlines() if not l.startswith(("%", "!"))))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            callee = ast.unparse(node.func)
            assert not callee.endswith("fit"), f"{path.name}: a cell calls {callee}(...): use the chapter's protocol"
            for kw in node.keywords:
                if kw.arg == "device":
                    assert ast.unparse(kw.value) == "RUN.device", \
                        f"{path.name}: {callee}(device={ast.unparse(kw.value)}): runs use RUN.device"
