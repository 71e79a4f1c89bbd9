"""SGD (momentum, Nesterov, weight decay only on >= 2-D weights, state round-trip) and the
learning-rate schedules (warm-up, cosine, step; pure functions of the step)."""
import math

import pytest

from tinyba2m import backend
from tinyba2m.nn import Linear, ReLU, Sequential
from tinyba2m.optim import SGD, learning_rate

np = backend.numpy_module


def tiny_model(seed=0):
    backend.seed(seed)
    return Sequential(Linear(3, 4), ReLU(), Linear(4, 2))


def set_grads(model, rng):
    for _, mod, key in model.named_parameters():
        mod.grads[key] = backend.to_device(rng.standard_normal(mod.params[key].shape), mod.params[key].dtype)


def reference_sgd(params, grads_seq, lr, mu, wd, nesterov, decayed):
    """Plain re-statement of the PyTorch SGD update, written independently of the class."""
    params = {k: v.astype(np.float64).copy() for k, v in params.items()}
    buf = {}
    for grads in grads_seq:
        for k in params:
            d = grads[k] + (wd * params[k] if decayed[k] else 0.0)
            buf[k] = d.copy() if k not in buf else mu * buf[k] + d
            params[k] -= lr * ((d + mu * buf[k]) if nesterov else buf[k])
    return params


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_matches_reference_update(nesterov, wd):
    model = tiny_model()
    start = {k: backend.to_host(mod.params[key]).copy() for k, mod, key in model.named_parameters()}
    opt = SGD(model, lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=wd)
    rng = np.random.default_rng(3)
    seq = []
    for _ in range(4):
        set_grads(model, rng)
        seq.append({k: backend.to_host(mod.grads[key]).astype(np.float64) for k, mod, key in model.named_parameters()})
        opt.step()
    decayed = {k: k.endswith(".w") for k in start}
    ref = reference_sgd(start, seq, 0.1, 0.9, wd, nesterov, decayed)
    for k, mod, key in model.named_parameters():
        np.testing.assert_allclose(backend.to_host(mod.params[key]), ref[k], rtol=1e-5, atol=1e-6)


def test_no_weight_decay_on_biases_and_1d_params():
    model = tiny_model()
    opt = SGD(model, lr=1.0, momentum=0.0, weight_decay=0.5)
    assert sorted(k for k, d in opt.decayed.items() if d) == ["0.w", "2.w"]
    before = {k: backend.to_host(mod.params[key]).copy() for k, mod, key in model.named_parameters()}
    model.zero_grad()
    opt.step()  # zero gradients: only decay moves the parameters
    for k, mod, key in model.named_parameters():
        after = backend.to_host(mod.params[key])
        if k.endswith(".b"):
            assert np.array_equal(after, before[k])
        else:
            np.testing.assert_allclose(after, 0.5 * before[k], rtol=1e-6)


def test_updates_in_place_and_keeps_dtype():
    model = tiny_model()
    arrays = [mod.params[key] for _, mod, key in model.named_parameters()]
    opt = SGD(model, lr=0.1)
    set_grads(model, np.random.default_rng(0))
    opt.step()
    assert all(a is mod.params[key] for a, (_, mod, key) in zip(arrays, model.named_parameters()))
    assert all(backend.dtype_of(a) == np.float32 for a in arrays)


def test_state_dict_round_trip_continues_identically():
    a = tiny_model()
    opt_a = SGD(a, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    rng = np.random.default_rng(5)
    for _ in range(3):
        set_grads(a, rng)
        opt_a.step()
    c = tiny_model(seed=7)  # different initial weights, then overwritten from a
    c.load_state_dict(a.state_dict())
    opt_c = SGD(c, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    opt_c.load_state_dict(opt_a.state_dict())
    assert opt_c.steps == 3 and sorted(opt_c.velocity) == sorted(opt_a.velocity)
    for model, opt in ((a, opt_a), (c, opt_c)):
        g = np.random.default_rng(11)
        for _ in range(2):
            set_grads(model, g)
            opt.step()
    for (k, ma, ka), (_, mc, kc) in zip(a.named_parameters(), c.named_parameters()):
        assert np.array_equal(backend.to_host(ma.params[ka]), backend.to_host(mc.params[kc])), k
    # without the momentum buffers the continuation differs (the test can fail)
    d = tiny_model(seed=7)
    d.load_state_dict(c.state_dict())
    opt_d = SGD(d, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    set_grads(d, np.random.default_rng(1))
    set_grads(c, np.random.default_rng(1))
    opt_c.step()
    opt_d.step()
    assert not np.array_equal(backend.to_host(c[0].params["w"]), backend.to_host(d[0].params["w"]))


def test_load_state_dict_checks_names_and_shapes():
    model = tiny_model()
    opt = SGD(model, lr=0.1)
    with pytest.raises(ValueError, match="unknown parameter 'nope.w'"):
        opt.load_state_dict({"arrays": {"velocity.nope.w": np.zeros(3)}, "hparams": {}})
    with pytest.raises(ValueError, match=r"0.w: expected shape \(3, 4\), got \(4, 3\)"):
        opt.load_state_dict({"arrays": {"velocity.0.w": np.zeros((4, 3))}, "hparams": {}})


def test_no_gradient_at_all_is_an_error():
    model = tiny_model()
    before = {k: backend.to_host(mod.params[key]).copy() for k, mod, key in model.named_parameters()}
    opt = SGD(model, lr=0.1)
    with pytest.raises(ValueError, match="no parameter has a gradient"):
        opt.step()
    assert opt.steps == 0
    assert all(np.array_equal(backend.to_host(mod.params[key]), before[k]) for k, mod, key in model.named_parameters())


@pytest.mark.parametrize("nesterov", [False, True])
def test_a_parameter_without_gradient_is_skipped_like_pytorch(nesterov):
    """Gradient None: no update, no weight decay, momentum buffer untouched; the others as usual."""
    model = tiny_model()
    opt = SGD(model, lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.05)
    rng = np.random.default_rng(0)
    set_grads(model, rng)
    opt.step()                                         # every parameter has a momentum buffer now
    velocity = {k: backend.to_host(v).copy() for k, v in opt.velocity.items()}
    start = {k: backend.to_host(mod.params[key]).copy() for k, mod, key in model.named_parameters()}
    set_grads(model, rng)
    grads = {k: backend.to_host(mod.grads[key]).astype(np.float64) for k, mod, key in model.named_parameters()}
    model[0].grads["w"] = None                         # the first layer's weight gets no gradient this step
    opt.step()
    assert np.array_equal(backend.to_host(model[0].params["w"]), start["0.w"])       # not moved, not decayed
    assert np.array_equal(backend.to_host(opt.velocity["0.w"]), velocity["0.w"])      # buffer untouched
    # a parameter with a gradient follows the PyTorch update from its saved buffer
    g = grads["2.w"] + 0.05 * start["2.w"]
    v = 0.9 * velocity["2.w"] + g
    expected = start["2.w"] - 0.1 * ((g + 0.9 * v) if nesterov else v)
    np.testing.assert_allclose(backend.to_host(model[2].params["w"]), expected, rtol=1e-5, atol=1e-7)
    assert opt.steps == 2


def test_ba2m_branches_skipped_for_a_batch_of_one_are_left_alone():
    """BA²M with a batch of one in training: w = 1, its branches get no gradient; SGD steps the rest."""
    from tinyba2m.attention import BA2M
    from tinyba2m.nn import Conv2d
    backend.seed(0)
    model = Sequential(Conv2d(3, 8, 3, padding=1), BA2M(8, reduction=4))
    opt = SGD(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
    before = {k: backend.to_host(mod.params[key]).copy() for k, mod, key in model.named_parameters()}
    x = backend.to_device(np.random.default_rng(0).standard_normal((1, 3, 6, 6)), backend.default_dtype)
    model.zero_grad(set_to_none=True)
    y = model.forward(x)
    model.backward(backend.get_xp().ones_like(y))
    opt.step()
    moved = {k for k, mod, key in model.named_parameters()
             if not np.array_equal(backend.to_host(mod.params[key]), before[k])}
    assert moved == {"0.w", "0.b"}
    assert set(opt.velocity) == {"0.w", "0.b"}


@pytest.mark.parametrize("kwargs, match", [({"lr": 0.0}, "lr must be > 0"), ({"lr": -1.0}, "lr must be > 0"),
                                           ({"momentum": 1.0}, "momentum"), ({"weight_decay": -1e-4}, "weight_decay"),
                                           ({"momentum": 0.0, "nesterov": True}, "nesterov")])
def test_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD(tiny_model(), **{"lr": 0.1, **kwargs})


# -- schedules -------------------------------------------------------------------------------

def test_warmup_is_linear_and_reaches_base():
    lrs = [learning_rate(s, 100, 0.4, "cosine", warmup_steps=4) for s in range(5)]
    assert lrs[:4] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert lrs[4] == pytest.approx(0.4)  # cosine starts at base after warm-up


def test_cosine_shape():
    total, w = 110, 10
    lr = [learning_rate(s, total, 1.0, "cosine", w) for s in range(total)]
    assert lr[w] == pytest.approx(1.0)
    assert lr[w + 50] == pytest.approx(0.5)
    assert lr[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert all(a >= b for a, b in zip(lr[w:], lr[w + 1:]))


def test_step_milestones():
    lr = [learning_rate(s, 200, 0.1, "step") for s in range(200)]
    assert lr[0] == lr[99] == pytest.approx(0.1)
    assert lr[100] == lr[149] == pytest.approx(0.01)
    assert lr[150] == lr[199] == pytest.approx(0.001)


def test_pure_function_of_step():
    a = [learning_rate(s, 50, 0.1, "cosine", 5) for s in range(50)]
    b = [learning_rate(s, 50, 0.1, "cosine", 5) for s in reversed(range(50))][::-1]
    assert a == b


def test_schedule_bad_values():
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        learning_rate(0, 10, 0.1, "linear")
    with pytest.raises(ValueError, match="total_steps"):
        learning_rate(0, 0, 0.1)
