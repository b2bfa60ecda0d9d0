"""Test-session setup shared by every tier (see tests/README.md).

On a machine without CUDA, Triton kernels are exercised through Triton's interpreter: TRITON_INTERPRET must be
set before any kernel module is imported, so it is set here, first. Inductor still emits C++ on CPU; only the
kernel tests in tests/runtime call the Triton launchers directly.
"""
import os
import shutil

if shutil.which("nvidia-smi") is None and os.environ.get("ACCEL_TEST_NO_INTERPRET") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Hypothesis profiles. "ci" is loaded automatically when CI is set (derandomized: every run draws the same
# examples); "dev" is the default locally; "long" explores more (ACCEL_HYPOTHESIS_PROFILE=long).
settings.register_profile(
    "ci", max_examples=12, deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "long", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile(os.environ.get("ACCEL_HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")


# Tuning switches that the GPU runs' scripts export (benchmarks/results/*.sh): every test starts from their defaults
# and sets what it tests itself.
_TUNING_ENV = ("ACCEL_COMPILE_THREADS", "ACCEL_TUNE_CHAIN")


@pytest.fixture(autouse=True)
def _default_tuning_env(monkeypatch):
    for name in _TUNING_ENV:
        monkeypatch.delenv(name, raising=False)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture
def compiled_for_pdl(monkeypatch):
    """The linear, qlinear, attention and rope launchers compile their kernels with PDL=True (as inside an accel
    compile on Hopper with the default PDL families).
    The interpreter cannot run griddepcontrol, so on CPU its two instructions become no-ops and a test covers the
    PDL path's loads and summation order; on a GPU they are the real instructions (no-ops without the launch
    attribute)."""
    import triton.language as tl

    from accel.runtime.kernels import attention, linear, qlinear, rope

    for module in (linear, qlinear, attention, rope):  # the default families: not the GEMVs' early trigger
        monkeypatch.setattr(module, "use_pdl", lambda device, family="gemv": not family.startswith("gemv_early"))
    for module in (linear, qlinear):
        monkeypatch.setattr(module, "early_trigger", lambda device, grid, num_warps, sms: False)
    if not HAS_CUDA:
        monkeypatch.setattr(tl.extra.cuda, "gdc_wait", lambda *args, **kwargs: None)
        monkeypatch.setattr(tl.extra.cuda, "gdc_launch_dependents", lambda *args, **kwargs: None)


@pytest.fixture
def compiled_for_early_pdl(compiled_for_pdl, monkeypatch):
    """As ``compiled_for_pdl``, with the GEMVs' early trigger too (option ``pdl_early_trigger``)."""
    from accel.runtime.kernels import linear, qlinear

    for module in (linear, qlinear):
        monkeypatch.setattr(module, "use_pdl", lambda device, family="gemv": True)
        monkeypatch.setattr(module, "early_trigger", lambda device, grid, num_warps, sms: True)
