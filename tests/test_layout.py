"""The package's shape: no import cycle, production code never imports its test support, every
module imports in a fresh process, and the shipped data travels inside an ordinary wheel."""

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: where each installed package's files live in the repository
PACKAGE_DIRS = {"tvmopt.schedules": ROOT / "schedules", "tvmopt.tuners": ROOT / "tuners", "tvmopt": ROOT / "tvmopt"}


def _modules() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package] + parts)
            if package == "tvmopt" and parts and parts[0] in ("schedules", "tuners"):
                continue
            out[name] = path
    return out


def _imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    """tvmopt modules that ``name`` imports (module-level statements only, or all)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("tvmopt")}


def test_no_import_cycle_at_module_level():
    modules = _modules()
    graph = {name: {m for m in _imports(name, path, True) if m in modules and m != name}
             for name, path in modules.items()}
    # a package's __init__ importing its own submodules is not a cycle through the package
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_production_code_never_imports_test_support():
    offenders = sorted(name for name, path in _modules().items()
                       if not name.startswith("tvmopt.testing")
                       and any(m.startswith("tvmopt.testing") for m in _imports(name, path, False)))
    assert offenders == []


def test_every_module_imports_in_a_fresh_process():
    names = sorted(n for n in _modules() if not n.endswith("__main__"))
    code = ("import importlib, sys\nfailed = []\n"
            f"for n in {names!r}:\n"
            "    try:\n        importlib.import_module(n)\n"
            "    except Exception as e:\n        failed.append(f'{n}: {type(e).__name__}: {e}')\n"
            "print('\\n'.join(failed) or 'ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
    assert len(names) > 60


def test_registry_lists_every_family_once_and_test_workloads_only_on_request():
    from tvmopt.ops.registry import families, family_of_onnx_op, family_of_prefix, workload_prefixes
    from tvmopt.model.opset import SPECS

    names = [f.name for f in families()]
    assert names == sorted(set(names))
    assert {"gemm", "conv2d", "binary", "ternary", "shift", "nm", "hashed", "codebook", "fastfood"} <= set(names)
    assert "fault" not in workload_prefixes() and "fault" in workload_prefixes(internal=True)
    # every ai.tvmopt op of the op set is lowered by exactly one family
    for op in SPECS:
        assert family_of_onnx_op(op) is not None, op
    assert family_of_prefix("xnor_dense").name == "binary"
    assert family_of_prefix("no_such_family") is None


@pytest.mark.skipif(os.environ.get("TVMOPT_SKIP_WHEEL") == "1", reason="TVMOPT_SKIP_WHEEL=1")
def test_wheel_carries_the_shipped_records_and_an_installed_copy_finds_them(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("tvmopt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(p.name for p in (ROOT / "logs" / "records").glob("*.jsonl"))
    assert shipped and all(f"tvmopt/logs/records/{n}" in names for n in shipped)
    assert any(n.startswith("tvmopt/logs/replay/") and n.endswith(".json") for n in names)
    assert not any(n.startswith(("tvmopt/logs/compare/", "tvmopt/logs/search/")) or n.endswith(".lock") for n in names)
    assert "tvmopt/ops/registry.py" in names and "tvmopt/schedules/gemm.py" in names

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = ("import tvmopt, json\n"
            "from tvmopt.records.shipped import records_dir, replay_table\n"
            "from tvmopt.build.compile import best_configs\n"
            "from tvmopt.target import parse_target\n"
            "from tvmopt.records.store import RecordCache\n"
            "import sys\n"
            "target = parse_target('llvm -mcpu=znver3 -num-cores=2')\n"
            "keys = sorted(RecordCache(records_dir()).ranked(target.key))\n"
            "lookup, used = best_configs(target, sys.argv[1])\n"
            "found = [k for k in keys if lookup(k) is not None]\n"
            "print(json.dumps({'file': tvmopt.__file__, 'records': str(records_dir()), 'tasks': len(found),\n"
            "                  'sources': sorted(set(used.values())), 'key': target.key,\n"
            "                  'replay': str(replay_table('gemm_256x256x256_llvm-znver5-2c.json'))}))\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "no-records")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["file"].startswith(str(site))
    assert got["records"].startswith(str(site)) and got["tasks"] > 0
    assert got["sources"] == ["shipped"]
    assert got["replay"].startswith(str(site))
