"""Every mistake in the catalogue ends in one 'tvmopt: error:' line naming the problem, exit
status 2, no traceback and no output file left behind (tvmopt/testing/reliability.py: BAD_INPUTS)."""

import pytest

from tvmopt.testing.reliability import BAD_INPUTS, check_bad_input


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("bad-input")


@pytest.mark.parametrize("index", range(len(BAD_INPUTS)), ids=[c.name for c in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(base, index):
    case = BAD_INPUTS[index]
    assert check_bad_input(case, base / str(index)) is None


def test_catalogue_covers_the_issue_list():
    names = " ".join(c.name for c in BAD_INPUTS)
    for needed in ("missing", "directory", "empty", "random bytes", "truncated", "unsupported op", "wrong shape",
                   "wrong dtype", "unknown target", "malformed target", "zero --trials", "negative --trials",
                   "huge --trials", "unwritable records", "corrupt lines", "another TVM version",
                   "another target", "inconsistent attributes",
                   # issue 23
                   "truncated module", "corrupt .so.json", "not a tvmopt module", "--records that does not exist",
                   "naming a file", "another CPU", "more cores", "int32", "opset", "number as mcpu",
                   "config is a string"):
        assert needed in names, needed
