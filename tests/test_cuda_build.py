"""Whole-model CUDA builds without a GPU (issue 21, item 1): every bundled model and two zoo
networks compile for sm_80 and sm_90 through the pass (compressed layers on their CUDA kernels)
and DLight's GPU rules; the builds' schedules, run serially on the CPU, give onnxruntime's
outputs; the exported module says how it was built, and what cannot run here fails in one line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tvmopt.build.compile import compile_model
from tvmopt.build.deploy import build
from tvmopt.build.gpu import RULE_NAMES, TVMOPT_SPACE, schedule_gpu
from tvmopt.errors import TargetError
from tvmopt.passes import DetectOptions

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = sorted(p for p in (ROOT / "examples" / "models").glob("digits_*.onnx") if not p.name.endswith(".plain.onnx"))
ARCHS = ("sm_80", "sm_90")


def _has_gpu() -> bool:
    import tvm

    try:
        return bool(tvm.cuda(0).exist)
    except Exception:  # noqa: BLE001
        return False


def _ort_output_shape(path: Path) -> list[int]:
    """onnxruntime's output shape for ``path`` (its plain export where it has tvmopt's own ops)."""
    plain = path.with_name(path.name.replace(".onnx", ".plain.onnx"))
    path = plain if plain.exists() else path
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.zeros([d if isinstance(d, int) else 1 for d in inp.shape], np.float32)
    return list(sess.run(None, {inp.name: x})[0].shape)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_bundled_model_compiles_for_cuda(arch):
    assert len(BUNDLED) >= 12
    for path in BUNDLED:
        compiled = compile_model(path, f"cuda -arch={arch}", shipped=False)
        assert compiled.target.key == f"cuda-{arch}"
        assert compiled.output_shapes() == [_ort_output_shape(path)], path.name
        # every function scheduled by a DLight rule or by its task's CUDA space, no CPU leftovers
        assert compiled.gpu_rules and set(compiled.gpu_rules.values()) <= set(RULE_NAMES) | {TVMOPT_SPACE}, path.name
        compressed = [la for la in compiled.lowered.layers if la.choice.startswith("compressed")]
        assert sum(rule == TVMOPT_SPACE for rule in compiled.gpu_rules.values()) == len({la.kernel for la in compressed})
        # at one image only the transforms are predicted faster (less arithmetic); the digits
        # models' decode GEMVs are too small to be bound by their weights' bytes
        assert all(la.kernel.split(":")[0] in ("fastfood", "hadamard") for la in compressed), path.name
        assert bool(compressed) == ("fastfood" in path.name), path.name
        assert "T.launch_thread" in compiled.mod.script() or "blockIdx" in compiled.mod.script()


def _shuffle_free_records(path: Path, tmp_path: Path, batch: int) -> Path:
    """A records file giving each Fastfood / Hadamard layer of ``path`` a CUDA config without
    warp shuffles (which have no serial meaning: tvmopt/testing/cuda_emulation.py)."""
    from tvmopt.build.inspect import inspect_model
    from tvmopt.ops.task import cuda_task
    from tvmopt.records.store import Record

    out = tmp_path / f"{path.stem}.jsonl"
    lines = []
    for layer in inspect_model(path, batch=batch, target="cuda -arch=sm_90",
                               options=DetectOptions(kernels="compressed"), records=tmp_path / "none"):
        if layer.kernel.split(":")[0] in ("fastfood", "hadamard"):
            space = cuda_task(layer.kernel).space
            config = space.replaced(space.initial(), {"shuffle": False})
            lines.append(Record(layer.kernel, "cuda-sm_90", config, (1e-6,), space=space.fingerprint()).to_line())
    out.write_text("".join(line + "\n" for line in lines))
    return out


@pytest.mark.parametrize("kernels", ["compressed", "auto"])
def test_cuda_builds_run_serially_on_the_cpu_give_onnxruntimes_outputs(kernels, tmp_path):
    """The CUDA kernels' index arithmetic, weight layouts, shared-memory staging and the DLight
    schedules around them, run with their thread loops serial on the CPU (no GPU here)."""
    import tvm
    from tvm import relax

    from tvmopt.build.compile import run_main
    from tvmopt.build.inspect import inspect_model
    from tvmopt.testing.cuda_emulation import emulate

    rng = np.random.default_rng(7)
    families, lowerings = set(), set()
    for path in BUNDLED:
        plain = path.with_name(path.name.replace(".onnx", ".plain.onnx"))
        sess = ort.InferenceSession(str(plain if plain.exists() else path), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = rng.standard_normal([2 if not isinstance(d, int) else d for d in inp.shape]).astype(np.float32)
        if kernels == "auto":
            # with no CUDA records most compressed layers are predicted dense: a model whose
            # layers lower to the kernels of one built before (its weights differ only) is not
            # built again (12 of the 16 models)
            lowering = tuple(la.kernel for la in inspect_model(path, batch=x.shape[0], target="cuda -arch=sm_90",
                                                               options=DetectOptions(kernels=kernels),
                                                               records=tmp_path / "none"))
            if lowering in lowerings:
                continue
            lowerings.add(lowering)
        elif not {"cnn", "fp32"} & set(path.stem.split("_")):
            # an MLP's compressed layers lower to the kernel families of the CNN of its family
            # (built before it, at other shapes): the compressed MLPs are skipped, 9 of 16 built
            continue
        records = _shuffle_free_records(path, tmp_path, x.shape[0])
        compiled = compile_model(path, "cuda -arch=sm_90", records=records, shipped=False, batch=x.shape[0],
                                 options=DetectOptions(kernels=kernels))
        expected = sess.run(None, {inp.name: x})[0]
        vm = relax.VirtualMachine(emulate(compiled.mod), tvm.cpu())
        got = run_main(vm["main"], x, tvm.cpu())
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(), err_msg=path.name)
        compressed = {la.kernel.split(":")[0] for la in compiled.lowered.layers if la.choice.startswith("compressed")}
        if kernels == "compressed" and "fp32" not in path.name:
            assert compressed, path.name
        families |= compressed
    if kernels == "compressed":
        assert families >= {"binary_dense", "ternary_dense", "shift_dense", "nm_decode_dense", "hashed_dense",
                            "fastfood", "hadamard"}


def test_block_hashed_layers_build_for_cuda_with_their_hashes_inlined(tmp_path):
    """The CPU kernel computes a block hash's hashes in stages of their own; the CUDA view inlines
    them, and the CUDA build (run serially on the CPU) gives PyTorch's outputs."""
    import torch
    import tvm
    from torch import nn
    from tvm import relax

    import tvmopt.nn as tn
    from tvmopt.build.compile import run_main
    from tvmopt.testing.cuda_emulation import emulate

    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), tn.HashedLinear(256, 128, block=16, seed=1)).eval()
    x = torch.randn(2, 32)
    path = tn.export_onnx(model, x, tmp_path / "hb.onnx")
    compiled = compile_model(path, "cuda -arch=sm_90", records=tmp_path / "none", shipped=False, batch=2,
                             options=DetectOptions(kernels="compressed"))
    assert [la.kernel.split(":")[0] for la in compiled.lowered.layers][-1] == "hashed_block_dense"
    got = run_main(relax.VirtualMachine(emulate(compiled.mod), tvm.cpu())["main"], x.numpy(), tvm.cpu())
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("network", ["resnet50", "squeezenet"])
def test_zoo_networks_compile_for_sm80_and_sm90(network, tmp_path):
    from tvmopt.testing import zoo

    path = zoo.realize(network, tmp_path / f"{network}.onnx")
    for arch in ARCHS:
        compiled = compile_model(path, f"cuda -arch={arch}", shipped=False)
        assert compiled.output_shapes() == [_ort_output_shape(path)]
        convs = [la for la in compiled.lowered.layers if la.kernel.startswith("conv2d:")]
        assert len(convs) >= 26


def test_exported_cuda_module_describes_itself_and_refuses_to_run_without_a_gpu(tmp_path):
    source = ROOT / "examples" / "models" / "digits_cnn_binary.onnx"
    out = tmp_path / "m.so"
    result = build(source, out, target="cuda -arch=sm_90", records=tmp_path / "none")
    meta = json.loads((tmp_path / "m.so.json").read_text())
    assert out.stat().st_size > 0 and meta["library"]["bytes"] == out.stat().st_size
    assert meta["target"] == "cuda-sm_90" and meta["device"] == "cuda"
    assert meta["output_shapes"] == [[1, 10]] and meta["compiled_without_device"] == (not _has_gpu())
    assert any("decoded fp32 weight" in n for n in meta["notes"])
    assert set(meta["gpu_rules"]) == set(result.compiled.gpu_rules)
    if _has_gpu():
        return
    run = subprocess.run([sys.executable, "-m", "tvmopt", "run", str(out)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == ["tvmopt: error: m.so was built for cuda-sm_90: this machine has no "
                                               "CUDA device to run it on"]


def test_cpu_only_options_on_cuda_are_one_line_errors(tmp_path):
    source = ROOT / "examples" / "models" / "digits_mlp_binary.onnx"
    with pytest.raises(TargetError, match="--kernels measure times kernels on this machine's CPU"):
        compile_model(source, "cuda -arch=sm_90", options=DetectOptions(kernels="measure"))
    with pytest.raises(TargetError, match="--layout nhwc is for CPU kernels"):
        compile_model(source, "cuda -arch=sm_90", options=DetectOptions(layout="nhwc"))
    run = subprocess.run([sys.executable, "-m", "tvmopt", "build", str(source), "--target", "cuda -arch=sm_90",
                          "--kernels", "measure", "-o", str(tmp_path / "m.so")], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.so").exists()


def test_a_rule_that_raises_is_passed_over_and_none_left_is_an_error():
    import tvm
    from tvm.s_tir import dlight as dl

    from tvmopt.build.compile import load_and_lower
    from tvmopt.passes.fuse_schedule import fuse

    class Broken:
        def apply(self, func, target, tunable):
            raise AssertionError("a rule's own bug")

    target = tvm.target.Target({"kind": "cuda", "arch": "sm_90"})
    _, lowered = load_and_lower(ROOT / "examples" / "models" / "digits_mlp_fp32.onnx",
                                options=DetectOptions(kernels="dense", layout="nchw"))
    mod, used = schedule_gpu(fuse(lowered.mod), target, rules=[("Broken", Broken()), ("Fallback", dl.gpu.Fallback())])
    assert used and set(used.values()) == {"Fallback"}
    assert all(f.attrs["tirx.is_scheduled"] for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc))
    _, lowered = load_and_lower(ROOT / "examples" / "models" / "digits_mlp_fp32.onnx",
                                options=DetectOptions(kernels="dense", layout="nchw"))
    with pytest.raises(TargetError, match=r"no GPU schedule for function '.*' \(Broken: AssertionError\)"):
        schedule_gpu(fuse(lowered.mod), target, rules=[("Broken", Broken())])


def test_inspect_shows_the_gpu_functions_and_their_rules():
    source = ROOT / "examples" / "models" / "digits_cnn_binary.onnx"
    run = subprocess.run([sys.executable, "-m", "tvmopt", "inspect", str(source), "--target", "cuda -arch=sm_90"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "GPU function(s) for cuda-sm_90" in line)
    functions = dict(line.split() for line in lines[at + 1:] if line.strip())
    assert int(lines[at].split()[0]) == len(functions) >= 4
    assert set(functions.values()) <= set(RULE_NAMES)
    assert any(f.startswith("fused_conv2d") for f in functions) and any(f.startswith("fused_dense") for f in functions)
    # at one image the binary layers are predicted dense on a GPU, and the table says it is unmeasured
    table = lines[3:at]
    assert sum(" binary " in row and "dense (predicted, unmeasured on a GPU" in row for row in table) == 3
    # forced, they run the binary decode kernel, which tvmopt's CUDA space schedules
    run = subprocess.run([sys.executable, "-m", "tvmopt", "inspect", str(source), "--target", "cuda -arch=sm_90",
                          "--kernels", "compressed"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "GPU function(s) for cuda-sm_90" in line)
    functions = dict(line.split() for line in lines[at + 1:] if line.strip())
    # each with its epilogue fused (the conv's scale; the dense layers' scale, bias and ReLU)
    assert sorted(f for f, rule in functions.items() if rule == TVMOPT_SPACE) == \
        ["fused_binary_dense_1_10_128_multiply2_add3", "fused_binary_dense_1_128_512_multiply1_add2_relu2",
         "fused_binary_dense_64_32_144_multiply"]
    assert sum("binary_dense:" in row and "compressed (forced)" in row for row in lines[3:at]) == 3


def test_prepared_device_check_runs_on_tvms_runtime_alone(tmp_path):
    """benchmarks/cuda_device.py end to end, built for this CPU (--cpu): the carried directory
    stays under 64 MiB, and its run loads every module through tvm_ffi and TVM's runtime
    library (never TVM's Python package), matching onnxruntime and torch.matmul."""
    carried = tmp_path / "carry"
    # two models stand for the sixteen: this checks the carry and the run on the runtime alone
    # (every bundled model's builds are checked elsewhere, for the CPU and for CUDA)
    carried_models = ["digits_cnn_fp32", "digits_mlp_ternary"]
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cuda_device.py"), "prepare", str(carried), "--cpu",
                    "--only", *carried_models], check=True, capture_output=True, timeout=600)
    size = sum(p.stat().st_size for p in carried.rglob("*") if p.is_file())
    assert size <= 64 << 20 and not list(carried.rglob("libtvm_compiler*"))
    run = subprocess.run([sys.executable, str(carried / "cuda_device.py"), "run", str(carried), "--device", "cpu",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "cuda_device.json").read_text())
    assert not report["tvm_python_package_loaded"]
    rows = {r["case"]: r for r in report["results"]}
    assert all(r["ok"] for r in rows.values()), report
    models = [r for r in rows.values() if r["kind"] == "model"]
    assert len(models) == 3                           # the compressed model twice: auto and --kernels compressed
    assert {r["case"] for r in models} == {*carried_models, "digits_mlp_ternary --kernels compressed"}
    assert rows["gemm_256x256x256"]["max_rel_err"] < 1e-5
    assert all(r["max_rel_err"] < 1e-4 and r["speedup"] > 0 for r in models)
    kernels = [r for r in rows.values() if r["kind"] == "kernel"]
    checked = {r["key"].split(":")[0] for r in kernels if r["mode"] == "check"}
    assert checked == {"gemm", "xnor_dense", "binary_dense", "hadamard", "fastfood"}
    assert all(r["max_rel_err"] < 1e-4 for r in kernels if r["mode"] == "check")
    assert all(len(r["seconds"]) == 7 and r["reference_ms"] > 0 for r in kernels)

    # ingest: a GPU run's JSON becomes CUDA records (one per kernel case, its rounds as costs)
    # and a table; this CPU run stands in for one, relabelled
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import cuda_device
    from tvmopt.records.store import RecordCache

    report.update(device="cuda", gpu="stand-in", target="cuda -arch=sm_90")
    fake = tmp_path / "gpu.json"
    fake.write_text(json.dumps(report))
    assert cuda_device.ingest(fake, tmp_path / "records", benchmarks=False) == len(kernels)
    records = RecordCache(tmp_path / "records").load("cuda-sm_90")
    assert sorted(r.workload for r in records) == sorted(r["key"] for r in kernels)
    assert all(r.costs == tuple(k["seconds"]) for r, k in zip(sorted(records, key=lambda r: r.workload),
                                                               sorted(kernels, key=lambda k: k["key"])))
    text = cuda_device.table(report)
    assert text.count("\n| ") == len(rows) + 1 and "xnor_dense" in text


def test_tune_for_cuda_extracts_the_kernels_the_cuda_build_schedules_itself(tmp_path):
    """``tvmopt tune --target cuda`` tunes the tasks a CUDA build runs on tvmopt's CUDA spaces
    (DLight schedules the rest), builds their candidates through the CUDA view, and without a GPU
    stops in one line (exit 2)."""
    import os

    from tvmopt.measure.local import _build
    from tvmopt.ops.task import task_for
    from tvmopt.schedules.space import config_to_json
    from tvmopt.target import parse_target
    from tvmopt.tune.loop import extract_tasks

    spec = parse_target("cuda -arch=sm_90")
    source = ROOT / "examples" / "models" / "digits_cnn_binary.onnx"
    forced = extract_tasks(source, options=DetectOptions(kernels="compressed"), target=spec, records=tmp_path / "r")
    assert sorted(key for key, _, _ in forced) == ["binary_dense:1x10x128", "binary_dense:1x128x512",
                                                   "binary_dense:64x32x144"]
    # auto: every layer dense, the dense products tunable (the build uses tvmopt's space once tuned)
    assert sorted(key for key, _, _ in extract_tasks(source, target=spec, records=tmp_path / "r")) == \
        ["dense:1x10x128", "dense:1x128x512"]
    fastfood = extract_tasks(ROOT / "examples" / "models" / "digits_mlp_fastfood.onnx", target=spec,
                             records=tmp_path / "r")
    assert {key.split(":")[0] for key, _, _ in fastfood} == {"fastfood", "hadamard"}
    view = task_for("binary_dense:1x4096x4096", "cuda")
    out = tmp_path / "cand.so"
    assert _build("binary_dense:1x4096x4096", config_to_json(view.space.initial()), spec.to_json(), str(out)) > 0
    assert out.stat().st_size > 0
    if not _has_gpu():
        run = subprocess.run([sys.executable, "-m", "tvmopt", "tune", str(source), "--target", "cuda -arch=sm_90",
                              "--trials", "4", "--records", str(tmp_path / "r")], capture_output=True, text=True,
                             timeout=300, env={**os.environ})
        assert run.returncode == 2 and run.stderr.strip().splitlines() == [
            "tvmopt: error: target cuda: no CUDA GPU on this machine; CUDA candidates can be compiled here but not "
            "measured, so tuning stops (measure on a GPU host: --rpc-tracker, or 'tvmopt cuda export' and "
            "'tvmopt cuda ingest')"]


def test_compressed_cuda_kernels_fold_their_scale_bias_and_relu_into_one_kernel():
    """Each binary layer of the MLP is one GPU function (product, per-channel scale, bias and
    ReLU), scheduled by tvmopt's CUDA space with the epilogue in its write-back: one kernel."""
    import re

    compiled = compile_model(ROOT / "examples" / "models" / "digits_mlp_binary.onnx", "cuda -arch=sm_90",
                             shipped=False, options=DetectOptions(kernels="compressed"))
    assert sorted(compiled.gpu_rules) == ["fused_binary_dense_1_10_256_multiply1_add1",
                                          "fused_binary_dense_1_256_256_multiply_add_relu",
                                          "fused_binary_dense_1_256_64_multiply_add_relu"]
    assert set(compiled.gpu_rules.values()) == {TVMOPT_SPACE}
    for name in compiled.gpu_rules:
        text = compiled.mod[name].script()
        assert len(re.findall(r'thread="blockIdx\.x"', text)) == 1, name       # one kernel launch


def test_a_cuda_record_puts_a_dense_layer_on_tvmopts_cuda_space(tmp_path):
    """Dense layers run DLight's schedules until a CUDA record tunes them; then tvmopt's dense
    CUDA space (plain [K, N] weight, epilogue folded), and the build still gives onnxruntime's
    outputs (serially on the CPU)."""
    import tvm
    from tvm import relax

    from tvmopt.build.compile import run_main
    from tvmopt.ops.task import cuda_task
    from tvmopt.records.store import Record
    from tvmopt.testing.cuda_emulation import emulate

    path = ROOT / "examples" / "models" / "digits_mlp_fp32.onnx"
    key = "dense:1x256x256"
    space = cuda_task(key).space
    config = space.neighbours(space.initial())[0]
    records = tmp_path / "records.jsonl"
    records.write_text(Record(key, "cuda-sm_90", config, (1e-6,), space=space.fingerprint()).to_line() + "\n")
    untuned = compile_model(path, "cuda -arch=sm_90", records=tmp_path / "none", shipped=False)
    tuned = compile_model(path, "cuda -arch=sm_90", records=records, shipped=False)
    assert TVMOPT_SPACE not in untuned.gpu_rules.values()
    mine = [f for f, rule in tuned.gpu_rules.items() if rule == TVMOPT_SPACE]
    assert len(mine) == 1 and mine[0].startswith("fused_dense_1_256_256_add")
    assert tuned.tuned[key] == "records" and all(v == "" for k, v in tuned.tuned.items() if k != key)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(3).standard_normal([1 if not isinstance(d, int) else d for d in inp.shape]).astype(
        np.float32)
    got = run_main(relax.VirtualMachine(emulate(tuned.mod), tvm.cpu())["main"], x, tvm.cpu())
    np.testing.assert_allclose(got, sess.run(None, {inp.name: x})[0], rtol=1e-4, atol=1e-4)
