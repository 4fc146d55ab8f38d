import os

import pytest

# Keep tests from touching a user's real records directory.
os.environ.setdefault("TVMOPT_RECORDS", os.path.join(os.path.dirname(__file__), ".records-never-used"))


@pytest.fixture(scope="session")
def llvm_target():
    from tvmopt.target import parse_target

    return parse_target("llvm")
