import os

import pytest

# Keep tests from touching a user's real records directory.
os.environ.setdefault("TVMOPT_RECORDS", os.path.join(os.path.dirname(__file__), ".records-never-used"))
# The fault:N test workload is an op-family plugin, not part of the product: this process and
# every measuring worker or CLI subprocess it starts (they inherit the environment) load it.
os.environ["TVMOPT_PLUGINS"] = "tvmopt.testing.faults"


@pytest.fixture(scope="session")
def llvm_target():
    from tvmopt.target import parse_target

    return parse_target("llvm")
