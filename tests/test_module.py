import pytest

from tinyba2m import backend
from tinyba2m.nn import Linear, ReLU, Sequential


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
