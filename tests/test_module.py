import numpy as np
import pytest

from tinyba2m import backend
from tinyba2m.nn import Linear, ReLU, Sequential
from tinyba2m.nn.module import StateValueError


def make_net():
    backend.seed(0)
    return Sequential(Linear(4, 8), ReLU(), Linear(8, 3))


def test_named_parameters_and_modes():
    net = make_net()
    names = [n for n, _, _ in net.named_parameters()]
    assert names == ["0.w", "0.b", "2.w", "2.b"]
    net.eval()
    assert all(not m.training for _, m in net.named_modules())
    net.train()
    assert all(m.training for _, m in net.named_modules())


def test_state_dict_round_trip(xp):
    a, b = make_net(), Sequential(Linear(4, 8), ReLU(), Linear(8, 3))
    b.load_state_dict(a.state_dict())
    x = xp.asarray(backend.new_host_rng(1).standard_normal((2, 4)).astype("float32"))
    assert xp.allclose(a.forward(x), b.forward(x))


def test_load_state_dict_shape_mismatch_is_clear():
    a = make_net()
    other = Sequential(Linear(4, 8), ReLU(), Linear(8, 5))
    with pytest.raises(ValueError, match=r"2\.w: expected shape \(8, 5\), got \(8, 3\)"):
        other.load_state_dict(a.state_dict())


def test_load_state_dict_missing_entry_is_clear():
    sd = make_net().state_dict()
    del sd["0.b"]
    with pytest.raises(ValueError, match="missing entries: 0.b"):
        make_net().load_state_dict(sd)


def test_zero_grad_and_accumulation():
    net = make_net()
    x = backend.get_xp().ones((2, 4), dtype="float32")
    net.zero_grad()
    out = net.forward(x)
    net.backward(backend.get_xp().ones_like(out))
    g1 = net[0].grads["w"].copy()
    net.forward(x)
    net.backward(backend.get_xp().ones_like(out))
    assert backend.get_xp().allclose(net[0].grads["w"], 2 * g1)
    net.zero_grad()
    assert float(abs(net[0].grads["w"]).sum()) == 0.0


def test_sequential_rejects_non_modules():
    with pytest.raises(ValueError, match="Sequential: item 1"):
        Sequential(Linear(2, 2), "relu")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_load_state_dict_refuses_non_finite_values_and_changes_nothing(xp, bad):
    net = make_net()
    before = {k: backend.to_host(v).copy() for k, v in net.state_dict().items()}
    sd = make_net().state_dict()
    sd["2.w"][1, 2] = bad
    with pytest.raises(StateValueError, match=r"2\.w: 1 of 24 values are not finite \(NaN or inf\)"):
        net.load_state_dict(sd)
    after = net.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_load_state_dict_refuses_integer_arrays_for_float_parameters():
    net = make_net()
    sd = net.state_dict()
    sd["0.b"] = np.arange(8)
    sd["2.b"] = np.ones(3, dtype=bool)
    with pytest.raises(StateValueError, match=r"0\.b: expected a floating-point array \(the model's is float\d+\), "
                                               r"got dtype int64; 2\.b: .*got dtype bool"):
        net.load_state_dict(sd)


def test_load_state_dict_refuses_non_finite_buffers():
    from tinyba2m.nn import BatchNorm2d
    bn = BatchNorm2d(3)
    sd = bn.state_dict()
    sd["running_var"][0] = np.nan
    with pytest.raises(StateValueError, match="running_var: 1 of 3 values are not finite"):
        bn.load_state_dict(sd)


def test_load_state_dict_takes_another_float_dtype():
    a, b = make_net(), make_net().astype("float64")
    b.load_state_dict({k: v.astype("float16") for k, v in a.state_dict().items()})
    assert b[0].params["w"].dtype == backend.get_xp().float64
