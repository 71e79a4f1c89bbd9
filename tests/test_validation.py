import pytest

from tinyba2m.nn import AvgPool2d, Conv2d
from tinyba2m.ops.validation import pair


@pytest.mark.parametrize("value, match", [
    (1.5, r"op: stride must be an integer >= 1 or a pair of them, got 1.5"),
    ("ab", r"op: stride must be an integer >= 1 or a pair of them, got 'ab'"),
    ((1, 2, 3), r"op: stride must be an int or a pair of ints, got \(1, 2, 3\)"),
    ((1, 0), r"op: stride must be an integer >= 1, got 0"),
    (True, r"op: stride must be an integer >= 1 or a pair of them, got True"),
])
def test_pair_rejects_with_a_value_error(value, match):
    with pytest.raises(ValueError, match=match):
        pair("op", "stride", value)


def test_pair_accepts_ints_and_pairs():
    assert pair("op", "k", 3) == (3, 3) and pair("op", "k", (2, 3)) == (2, 3) and pair("op", "p", [0, 1], 0) == (0, 1)


def test_modules_report_a_float_argument_by_name():
    with pytest.raises(ValueError, match="Conv2d: stride must be an integer >= 1 or a pair"):
        Conv2d(3, 4, 3, stride=1.5)
    with pytest.raises(ValueError, match="AvgPool2d: kernel_size must be an integer >= 1 or a pair"):
        AvgPool2d(2.0)
