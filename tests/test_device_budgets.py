"""Host-sync budgets, measured on the simulated device (``cupysim``) by its counters:

- zero device-to-host reads inside any op's forward and backward (every op of the op-contract
  table) and any module's (every module of the module-contract table, training and eval mode);
- one training step of a model (none / SE / BA²M): forward, loss, backward, SGD step: zero reads;
- the training loop: at most one read per ``DEVICE_READ_EVERY`` steps; an evaluation pass: one.
"""
import math

import numpy as np
import pytest

from tinyba2m import backend
from tinyba2m.data.synthetic import make_synthetic
from tinyba2m.training import TrainConfig, Trainer, loop

from test_module_contracts import MODULES, SEVERAL_INPUTS, build
from test_op_contracts import SPECS


@pytest.fixture
def sim():
    """cupysim active, counters at zero."""
    previous = backend.name
    xp = backend.use_backend("cupysim")
    backend.reset_device_counters()
    yield xp
    backend.use_backend(previous)


def syncs() -> tuple:
    c = backend.device_counters()
    return c["syncs"], c["sync_kinds"]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_no_op_reads_from_the_device(sim, name):
    forward, backward, make = SPECS[name]
    args, kwargs = make(sim, "float32", backend.new_host_rng(0))
    backend.reset_device_counters()
    out, cache = forward(*args, **kwargs)
    backward(sim.ones(out.shape, dtype=out.dtype), cache)
    assert syncs() == (0, {}), f"{name}: reads inside forward/backward"


@pytest.mark.filterwarnings("ignore:.*has no training statistics")
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_reads_from_the_device(sim, name, mode):
    module, x = build(name, "float32")
    getattr(module, mode)()
    backend.reset_device_counters()
    out = module.forward(x)
    module.backward(sim.ones(out.shape, dtype=out.dtype))
    assert syncs() == (0, {}), f"{name} ({mode}): reads inside forward/backward"


@pytest.mark.parametrize("name", sorted(SEVERAL_INPUTS))
def test_no_several_input_child_reads_from_the_device(sim, name):
    module, inputs = SEVERAL_INPUTS[name]()
    inputs = [sim.asarray(a.astype("float32")) for a in inputs]
    backend.reset_device_counters()
    out = module.forward(*inputs)
    module.backward(sim.ones(out.shape, dtype=out.dtype))
    assert syncs() == (0, {})


def test_ba2m_eval_reads_its_population_batch_size_once_after_a_load(sim):
    """The population weighting's training batch size lives on the host too: eval passes after
    training read nothing; after load_state_dict the first pass reads it once."""
    from tinyba2m.attention import BA2M
    backend.seed(0)
    m = BA2M(8)
    x = sim.asarray(backend.new_host_rng(1).standard_normal((4, 8, 4, 4)).astype("float32"))
    m.train()
    m.forward(x)
    m.eval()
    backend.reset_device_counters()
    m.forward(x)
    m.forward(x)
    assert syncs() == (0, {})
    assert m.weighting.n_train() == 4
    state = m.state_dict()
    state["weighting.population_batch_size"] = np.array([6.0], dtype="float32")
    m.load_state_dict(state)
    backend.reset_device_counters()
    m.forward(x)
    m.forward(x)
    assert syncs()[0] == 1 and m.weighting.n_train() == 6


def test_a_bad_device_label_makes_the_loss_nan_without_a_read(sim):
    from tinyba2m.ops.focal_loss import focal_loss_forward
    from tinyba2m.ops.losses import softmax_cross_entropy_forward
    z = sim.zeros((3, 4), dtype="float32")
    for forward in (softmax_cross_entropy_forward, focal_loss_forward):
        backend.reset_device_counters()
        good, _ = forward(z, sim.asarray(np.array([0, 3, 1])))
        bad, _ = forward(z, sim.asarray(np.array([0, 4, 1])))
        assert syncs()[0] == 0
        assert math.isfinite(float(good)) and math.isnan(float(bad))


def test_scatter_to_keys_matches_a_host_loop():
    from tinyba2m.attention.nonlocal_attention import scatter_to_keys
    rng = np.random.default_rng(0)
    rows, top = rng.standard_normal((3, 2, 5)), rng.integers(0, 4, (3, 5))
    want = np.zeros((3, 2, 4))
    for n in range(3):
        for r in range(2):
            for q in range(5):
                want[n, r, top[n, q]] += rows[n, r, q]
    np.testing.assert_allclose(scatter_to_keys(rows, top, 4), want, rtol=1e-12)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(96, 40, seed=0, num_classes=10, image_size=12)


def trainer_for(attention, tmp_path, data):
    cfg = TrainConfig(model="smallcnn", attention=attention, epochs=1, batch_size=8, progress=False,
                      out=str(tmp_path / "unused"), backend="cupysim")
    backend.seed(0)
    return Trainer(cfg, data=data, log=lambda m: None)


@pytest.mark.parametrize("attention", ["none", "se", "ba2m"])
def test_a_training_step_reads_nothing_and_the_loop_reads_every_few_steps(sim, attention, data, tmp_path):
    t = trainer_for(attention, tmp_path, data)
    x, y, _ = next(iter(loop.iterate_batches(data.train_images, data.train_labels, 8, shuffle=False, drop_last=True)))
    backend.reset_device_counters()
    t.model.train()
    t.loss_fn.forward(t.model.forward(x), y)
    t.model.zero_grad(set_to_none=True)
    t.model.backward(t.loss_fn.backward())
    t.optimizer.step()
    assert syncs() == (0, {}), "one training step"
    steps = 96 // 8
    backend.reset_device_counters()
    loop.train_epoch(t.model, t.loss_fn, t.optimizer, data.train_images, data.train_labels, epoch=1, epochs=1,
                     batch_size=8, rng=backend.new_host_rng(0), global_step=0, lr_at=lambda s: 0.01,
                     progress=False, track_weights=t.has_ba2m, guard=loop.RunAwayGuard(10))
    assert syncs()[0] <= math.ceil(steps / loop.DEVICE_READ_EVERY), syncs()
    backend.reset_device_counters()
    loop.evaluate(t.model, data.test_images, data.test_labels, 16, "batch")
    assert syncs()[0] == 1, syncs()   # 3 batches, one read


def test_the_numerical_gradient_reads_the_device_once(sim):
    """One copy of x's values; the central differences stay on the device (was two reads per coordinate)."""
    from tinyba2m.gradcheck.numeric import numerical_gradient
    x = sim.asarray(backend.new_host_rng(0).standard_normal((3, 4)))
    dout = sim.ones((3, 4))
    backend.reset_device_counters()
    g = numerical_gradient(lambda v: v * v, x, dout)
    assert syncs()[0] == 1
    np.testing.assert_allclose(backend.to_host(g), 2 * backend.to_host(x), rtol=1e-6)


@pytest.mark.parametrize("name", ["conv2d", "conv2d(1x1)", "nonlocal_attention", "batchnorm_relu(NCHW,train)", "relu"])
def test_device_chunks_run_serially_never_on_the_host_pool(sim, name, monkeypatch):
    """The host thread pool is for NumPy arrays; on a device every chunk runs in the caller's thread."""
    class NoPool:
        def map(self, *args):
            raise AssertionError("a device array's chunks went to the host thread pool")
    from tinyba2m import hostpool
    from tinyba2m.attention import nonlocal_attention
    from tinyba2m.ops import activations, batchnorm, conv
    monkeypatch.setattr(hostpool, "_host_threads", 2)
    monkeypatch.setattr(hostpool, "_host_pool", NoPool())
    monkeypatch.setattr(conv, "CHUNK_BYTES", 1)               # on the host: one chunk per sample
    monkeypatch.setattr(nonlocal_attention, "E_CHUNK_BYTES", 1)
    monkeypatch.setattr(batchnorm, "CHUNK_BYTES", 1)
    monkeypatch.setattr(activations, "CHUNK_BYTES", 1)
    forward, backward, make = SPECS[name]
    args, kwargs = make(sim, "float32", backend.new_host_rng(0))
    out, cache = forward(*args, **kwargs)
    backward(sim.ones(out.shape, dtype=out.dtype), cache)


def test_a_checkpoint_reads_once_per_dtype(sim):
    """state_dict of a model and of its optimizer: one read per dtype (was one per array)."""
    from tinyba2m.models import build_model
    from tinyba2m.optim import SGD
    backend.seed(0)
    model = build_model("smallcnn", attention="ba2m", num_classes=10)
    opt = SGD(model, lr=0.1, momentum=0.9)
    x = sim.asarray(backend.new_host_rng(0).standard_normal((4, 3, 12, 12)).astype("float32"))
    out = model.forward(x)
    model.backward(sim.ones(out.shape, dtype=out.dtype))
    opt.step()
    backend.reset_device_counters()
    state, velocity = model.state_dict(), opt.state_dict()["arrays"]
    assert len(state) > 20 and len(velocity) > 10
    assert syncs()[0] <= 2
    for name, mod, key in model.named_parameters():
        assert np.array_equal(state[name], backend.to_host(mod.params[key]))
    assert all(type(v) is np.ndarray for v in list(state.values()) + list(velocity.values()))
