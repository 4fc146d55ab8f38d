import pytest

from tvmopt.errors import TargetError
from tvmopt.target import TargetSpec, parse_target


def test_llvm_detects_host():
    spec = parse_target("llvm")
    assert spec.kind == "llvm"
    assert spec.config["mcpu"] and spec.config["num-cores"] >= 1
    masked = "-avx2" if "-avx512f" in spec.config.get("mattr", ()) else ""      # AVX-512 hidden from the guest
    assert spec.key == f"llvm-{spec.config['mcpu']}{masked}-{spec.config['num-cores']}c"
    assert spec.tvm_target().kind.name == "llvm"


@pytest.mark.parametrize("text,key", [
    ("llvm -mcpu=skylake -num-cores=4", "llvm-skylake-4c"),
    ('{"kind": "llvm", "mcpu": "znver3", "num-cores": 2}', "llvm-znver3-2c"),
    ("cuda", "cuda-sm_90"),
    ("cuda -arch=sm_80", "cuda-sm_80"),
    ('{"kind": "cuda", "arch": "sm_86"}', "cuda-sm_86"),
])
def test_target_keys(text, key):
    spec = parse_target(text)
    assert spec.key == key
    target = spec.tvm_target()
    assert target.kind.name == spec.kind
    if spec.kind == "cuda":
        assert target.host.kind.name == "llvm"
    assert TargetSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("text,needle", [
    ("", "empty target"),
    ("rocm", "unknown target kind 'rocm'"),
    ("llvm -mcpu=nonsense9", "unknown LLVM CPU 'nonsense9'"),
    ("llvm -num-cores=0", "num-cores must be a positive integer"),
    ("llvm -opt=3", "unknown llvm option"),
    ("llvm mcpu", "cannot read 'mcpu'"),
    ("cuda -arch=90", "bad CUDA arch '90'"),
    ("{not json", "not valid JSON"),
    ('{"mcpu": "x"}', "needs a \"kind\""),
])
def test_bad_targets_say_what_is_accepted(text, needle):
    with pytest.raises(TargetError, match=None) as info:
        parse_target(text)
    assert needle in str(info.value)


def test_tvmopt_runs_tvm_kernels_on_every_core():
    """TVM's pool would start half the cores on x86 (it assumes hyper-threading): importing
    tvmopt makes it start one thread per usable core, unless the user chose a number."""
    import subprocess
    import sys

    from tvmopt.target import host_cores

    code = ("import os; os.environ.pop('TVM_NUM_THREADS', None); import tvmopt, tvm, tvm_ffi;"
            "print(tvm_ffi.get_global_func('runtime.NumThreads')())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(host_cores())
    keep = subprocess.run([sys.executable, "-c", "import tvmopt, os; print(os.environ['TVM_NUM_THREADS'])"],
                          capture_output=True, text=True, check=True, env={**__import__("os").environ,
                                                                           "TVM_NUM_THREADS": "1"}).stdout
    assert keep.strip() == "1"
