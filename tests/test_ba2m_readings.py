"""The readings of BA²M (issue 9): the sigmoid-bounded SAR, the three normalisations, the
population eval mode, the run-away guard, the init schemes, the digits data set and the study."""
import json
import math
import pathlib
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import given_settings

from tinyba2m import backend
from tinyba2m.attention import BA2M, BA2MOptions
from tinyba2m.attention.options import EVAL_WEIGHTINGS
from tinyba2m.attention.sar import sar_backward, sar_forward, sar_fusion_reference_forward
from tinyba2m.attention.weighting import (batch_log_mean_exp, batch_softmax_weighting_forward,
                                          population_weighting_backward, population_weighting_forward,
                                          softmax_sum_weighting_backward, softmax_sum_weighting_forward)
from tinyba2m.data import make_synthetic
from tinyba2m.gradcheck.numeric import numerical_gradient
from tinyba2m.models import SmallCNN, apply_init, ba2m_modules, build_model, set_eval_weighting
from tinyba2m.nn import Conv2d, Linear
from tinyba2m.training import TrainConfig, Trainer, read_rows
from tinyba2m.training import cli, loop
from tinyba2m.training.loop import RunAwayError, RunAwayGuard

np = backend.numpy_module
seeds = st.integers(0, 2**16)
temperatures = st.sampled_from([0.25, 1.0, 4.0])
READINGS = [(sar, norm) for sar in ("sigmoid", "none") for norm in ("softmax", "softmax_sum", "sigmoid")]


def normal(seed, shape, scale=1.0):
    return scale * backend.new_host_rng(seed).standard_normal(shape)


def module(seed, channels=4, **kwargs):
    backend.seed(seed)
    return BA2M(channels, **kwargs).astype(backend.float64)


# -- the SAR ---------------------------------------------------------------------------------------

@given_settings(max_examples=15)
@given(seed=seeds, n=st.integers(1, 4), c=st.integers(1, 6), h=st.integers(1, 4), w=st.integers(1, 4),
       scale=st.sampled_from([0.1, 1.0, 30.0]))
def test_sigmoid_sar_is_the_mean_of_the_sigmoid_of_the_max(seed, n, c, h, w, scale):
    maps = (normal(seed, (n, c), scale), normal(seed + 1, (n, h, w), scale), normal(seed + 2, (n, h, w), scale))
    a, _ = sar_forward(*maps, activation="sigmoid")
    stack = np.stack(np.broadcast_arrays(maps[0][:, :, None, None], maps[1][:, None], maps[2][:, None]))
    expected = (1.0 / (1.0 + np.exp(-stack.max(axis=0)))).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(a, expected, rtol=1e-12, atol=1e-15)
    assert ((a > 0) & (a < 1)).all()
    raw, _ = sar_forward(*maps, activation="none")
    np.testing.assert_allclose(raw, sar_fusion_reference_forward(*maps)[0], rtol=1e-12, atol=1e-12)


def test_sigmoid_sar_backward_routes_through_the_sigmoid_of_the_winner():
    a_c = np.array([[2.0, -1.0]])                       # channel 0 wins everywhere, channel 1 nowhere
    a_ls = np.zeros((1, 1, 2))
    _, cache = sar_forward(a_c, a_ls, None, activation="sigmoid")
    dc, dls, dgs = sar_backward(np.ones(1), cache)
    s = 1.0 / (1.0 + math.exp(-2.0))
    # D = C H W = 4 elements: channel 0 wins one at each pixel, LS the other (against channel 1)
    np.testing.assert_allclose(dc, [[2 / 4 * s * (1 - s), 0.0]])
    np.testing.assert_allclose(dls, [[[1 / 4 * 0.25, 1 / 4 * 0.25]]])  # sigma'(0) = 1/4
    assert dgs is None
    with pytest.raises(ValueError, match="sar: activation must be one of"):
        sar_forward(a_c, a_ls, None, activation="relu")


# -- the weights of each reading -----------------------------------------------------------------

@given_settings(max_examples=15)
@given(seed=seeds, n=st.integers(2, 6), tau=temperatures, scale=st.sampled_from([1.0, 100.0]),
       normalisation=st.sampled_from(["softmax", "softmax_sum"]))
def test_sigmoid_sar_bounds_the_weight_ratio(seed, n, tau, scale, normalisation):
    m = module(seed % 5, temperature=tau, normalisation=normalisation)
    m.forward(normal(seed, (n, 4, 3, 3), scale))
    w = m.last_weights
    assert w.max() / w.min() < math.exp(1.0 / tau) * (1 + 1e-12)
    assert ((m.last_sar > 0) & (m.last_sar < 1)).all()
    total = w.sum()
    assert abs(total - (n if normalisation == "softmax" else 1.0)) < 1e-10 * n


def test_raw_sar_is_unbounded_where_the_sigmoid_sar_is_not():
    """The same branches, inputs far apart: the raw reading gives one sample almost all the weight."""
    x = normal(3, (4, 4, 3, 3))
    x[0] *= 40.0
    raw, squashed = module(1, sar_activation="none"), module(1)
    raw.forward(x)
    squashed.forward(x)
    assert raw.last_weights.max() / raw.last_weights.min() > math.e
    assert squashed.last_weights.max() / squashed.last_weights.min() < math.e


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_softmax_sum_weight_jacobian(tau):
    """dw_i/da_j = (w_i / tau)(delta_ij - w_j) for w = softmax(a / tau), numerically."""
    a = normal(4, (5,))
    x = np.ones((5, 1))
    _, (_, w, _) = softmax_sum_weighting_forward(x, a, tau)
    numeric = np.stack([numerical_gradient(lambda av: softmax_sum_weighting_forward(x, av, tau)[1][1], a.copy(),
                                           np.eye(5)[i]) for i in range(5)])
    np.testing.assert_allclose(numeric, (w / tau)[:, None] * (np.eye(5) - w[None, :]), rtol=1e-7, atol=1e-10)
    dy = normal(5, (5, 1))
    _, da = softmax_sum_weighting_backward(dy, (x, w, tau))
    np.testing.assert_allclose(da, numeric.T @ dy[:, 0], rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("sar,normalisation", READINGS)
def test_cross_sample_gradient_of_each_reading(sar, normalisation):
    """The gradient of sample 0's input from a loss on sample 1's output: nonzero exactly when the
    weights couple the samples (the softmaxes), in eval mode (no BN batch coupling) with batch weighting."""
    m = module(2, sar_activation=sar, normalisation=normalisation)
    m.forward(normal(0, (4, 4, 3, 3)))  # a training batch: running statistics and the population buffers
    m.eval()
    m.eval_weighting = "batch"
    x = normal(1, (3, 4, 3, 3))
    dy = np.zeros_like(x)
    dy[1] = normal(2, (4, 3, 3))
    m.forward(x)
    dx = m.backward(dy)
    numeric = numerical_gradient(lambda xv: m.forward(xv), x.copy(), dy)
    np.testing.assert_allclose(dx, numeric, rtol=1e-5, atol=1e-8)
    coupled = np.abs(dx[0]).max() > 1e-8
    assert coupled == (normalisation != "sigmoid")
    m.eval_weighting = "population"  # per sample: no coupling in any reading
    m.forward(x)
    assert np.abs(m.backward(dy)[0]).max() == 0.0


# -- the population eval mode ----------------------------------------------------------------------

def test_population_weights_equal_the_batch_softmax_at_the_batch_log_mean_exp():
    a, x = normal(6, (5,), 3.0), normal(7, (5, 2))
    m = batch_log_mean_exp(a, 0.5)
    _, (_, w_pop, _) = population_weighting_forward(x, a, m, 0.5)
    _, (_, w_soft, _) = batch_softmax_weighting_forward(x, a, 0.5)
    np.testing.assert_allclose(w_pop, w_soft, rtol=1e-12)
    np.testing.assert_allclose(batch_log_mean_exp(a + 1000.0, 1.0), batch_log_mean_exp(a, 1.0) + 1000.0)  # no overflow
    _, da = population_weighting_backward(np.ones_like(x), (x, w_pop, 0.5))
    np.testing.assert_allclose(da, x.sum(axis=1) * w_pop / 0.5)


def test_population_buffer_is_a_running_log_mean_exp():
    m = module(3, temperature=0.5)
    assert m.weighting.buffers["population_batch_size"][0] == 0
    x1, x2 = normal(1, (4, 4, 3, 3)), normal(2, (6, 4, 3, 3))
    m.forward(x1)
    l1 = batch_log_mean_exp(m.last_sar, 0.5)
    np.testing.assert_allclose(m.weighting.buffers["population_log_norm"], [l1])       # the first batch sets it
    m.forward(x2)
    l2 = batch_log_mean_exp(m.last_sar, 0.5)
    np.testing.assert_allclose(m.weighting.buffers["population_log_norm"], [0.9 * l1 + 0.1 * l2])
    assert m.weighting.buffers["population_batch_size"][0] == 6
    m.eval()
    m.forward(x2)                                                            # eval never updates it
    np.testing.assert_allclose(m.weighting.buffers["population_log_norm"], [0.9 * l1 + 0.1 * l2])
    np.testing.assert_allclose(m.last_weights, np.exp(m.last_sar / 0.5 - (0.9 * l1 + 0.1 * l2)))


@pytest.mark.parametrize("normalisation", ["softmax", "softmax_sum", "sigmoid"])
def test_population_eval_depends_on_the_sample_alone(normalisation):
    m = module(4, normalisation=normalisation)
    for seed in range(3):
        m.forward(normal(seed, (8, 4, 3, 3)))
    m.eval()
    x = normal(9, (5, 4, 3, 3))
    together = m.forward(x)
    alone = np.concatenate([m.forward(x[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(together, alone, rtol=1e-12)
    if normalisation == "softmax_sum":                                       # on the training scale
        np.testing.assert_allclose(m.forward(x[:1]) / x[:1], m.last_weights[0])
        assert m.last_weights[0] < 1.0
        m.eval_weighting = "uniform"
        m.forward(x)
        np.testing.assert_allclose(m.last_weights, 1.0 / 8)
    m.eval_weighting = "batch"
    batch = m.forward(x)
    if normalisation == "sigmoid":
        np.testing.assert_allclose(batch, together, rtol=1e-12)
    else:
        assert not np.allclose(batch, together)


def test_population_buffers_in_state_dict_and_old_states_fall_back_to_batch():
    m = module(5)
    m.forward(normal(1, (4, 4, 3, 3)))
    state = m.state_dict()
    assert {"weighting.population_log_norm", "weighting.population_batch_size"} <= set(state)
    fresh = module(6)
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.weighting.buffers["population_log_norm"], m.weighting.buffers["population_log_norm"])
    old = {k: v for k, v in state.items() if not k.startswith("weighting.population_")}  # a checkpoint from before
    legacy = module(7)
    legacy.load_state_dict(old)
    legacy.eval()
    x = normal(2, (3, 4, 3, 3))
    with pytest.warns(RuntimeWarning, match="population' has no training statistics.*using 'batch'"):
        y = legacy.forward(x)
    legacy.eval_weighting = "batch"
    np.testing.assert_array_equal(y, legacy.forward(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        legacy.eval_weighting = "population"
        legacy.forward(x)
    with pytest.raises(ValueError, match="missing entries: channel_branch"):
        legacy.load_state_dict({k: v for k, v in old.items() if not k.startswith("channel_branch.1")})


def test_a_state_saved_before_the_weighting_held_the_population_buffers_loads():
    """tests/data/ba2m_state_before_issue22.npz was written by the code before issue 22, where the
    population buffers were BA2M's own (``7.population_log_norm``): the state of a
    SmallCNN(num_classes=3, widths=(4, 4, 8)) with BA²M ("softmax_sum") in both slots after two
    training batches, and its logits on ``x`` under the three eval weightings. Its names map to
    the weighting's buffers (``BA2M.renamed_state``) and the model gives the same logits."""
    saved = np.load(pathlib.Path(__file__).parent / "data" / "ba2m_state_before_issue22.npz")
    state = {k[len("model/"):]: saved[k] for k in saved.files if k.startswith("model/")}
    assert {"7.population_log_norm", "12.population_batch_size"} <= set(state)
    backend.seed(1)
    model = SmallCNN(num_classes=3, attention="ba2m", widths=(4, 4, 8),
                     ba2m=BA2MOptions(normalisation="softmax_sum", placement="every"))
    model.load_state_dict(state)
    now = model.state_dict()
    assert set(now) == {k.replace("population_", "weighting.population_") for k in state}
    np.testing.assert_array_equal(now["12.weighting.population_batch_size"], state["12.population_batch_size"])
    model.eval()
    for mode in EVAL_WEIGHTINGS:
        set_eval_weighting(model, mode)
        np.testing.assert_allclose(model.forward(saved["x"]), saved[f"logits_{mode}"], rtol=1e-5, atol=1e-6)


def test_backward_before_forward_and_constant_weights():
    with pytest.raises(RuntimeError, match=r"BA2M\(4\): backward called before forward"):
        module(0).backward(np.ones((2, 4, 3, 3)))
    m = module(0, normalisation="softmax_sum")
    m.forward(normal(1, (4, 4, 3, 3)))
    m.eval()
    m.eval_weighting = "uniform"
    x = normal(2, (3, 4, 3, 3))
    np.testing.assert_allclose(m.forward(x), x / 4)
    np.testing.assert_allclose(m.backward(np.ones_like(x)), np.full_like(x, 0.25))
    assert set(m.zero_gradient_parameters()) == {q for q, _, _ in m.named_parameters()}


# -- the run-away guard ----------------------------------------------------------------------------

def test_run_away_guard_needs_a_sustained_stretch():
    guard = RunAwayGuard(num_classes=10)
    bound = 10 * math.log(10)
    for step in range(1, 10):
        guard.step(bound + 1, 0.1, 64, 1, step, step)           # 9 bad steps: not yet
    guard.step(1.0, 0.1, 64, 1, 10, 10)                         # a good step resets the streak
    for step in range(11, 20):
        guard.step(1.0, 0.9, 2, 1, step, step)                  # a batch of two: a share > 1/2 is normal
    with pytest.raises(RunAwayError, match="one sample holds 60% of a BA²M module's batch weight for 10"):
        for step in range(20, 31):
            guard.step(1.0, 0.6, 64, 1, step, step)
    guard.epoch_end(bound - 1, 1, 30, 30)
    with pytest.raises(RunAwayError, match="mean training loss of the epoch"):
        guard.epoch_end(bound + 1, 1, 30, 30)


def test_run_away_stops_the_run_like_a_non_finite_loss(tmp_path, monkeypatch, capsys):
    """With the loss bound lowered below any loss, the first epoch runs away: exit 1, the message
    names the epoch, the figure and the options that tame it, and that epoch is neither logged nor best."""
    data = make_synthetic(96, 48, seed=0, num_classes=10, image_size=12)
    monkeypatch.setattr(loop, "RUNAWAY_LOSS_FACTOR", 0.01)
    out = tmp_path / "run"
    code = cli.main(["--epochs", "2", "--batch-size", "32", "--out", str(out), "--no-progress"], data=data)
    err = capsys.readouterr().err
    assert code == 1
    assert "the run ran away: mean training loss of the epoch" in err and "at epoch 1" in err
    assert "--ba2m-sar sigmoid" in err and "--ba2m-temperature" in err
    assert read_rows(out / "metrics.csv") == [] and not (out / "best.npz").exists()


# -- options from the command line to the module ----------------------------------------------------

def test_reading_options_reach_the_modules_and_config(tmp_path):
    data = make_synthetic(64, 32, seed=0, num_classes=10, image_size=12)
    out = tmp_path / "run"
    code = cli.main(["--epochs", "1", "--batch-size", "32", "--out", str(out), "--no-progress", "--ba2m-sar", "none",
                     "--ba2m-normalisation", "softmax_sum", "--init", "torch"], data=data)
    assert code == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["ba2m_sar"], cfg["ba2m_normalisation"], cfg["init"]) == ("none", "softmax_sum", "torch")
    row = read_rows(out / "metrics.csv")[0]
    assert {"test_top1_population", "test_top1_batch", "test_top1_uniform", "max_weight"} <= set(row)
    model = Trainer(TrainConfig.from_dict(cfg), data=data).model
    mods = [m for _, m in ba2m_modules(model)]
    assert mods and all((m.sar_activation, m.normalisation) == ("none", "softmax_sum") for m in mods)


def test_config_without_sar_option_is_the_raw_reading():
    old = TrainConfig().to_dict()
    del old["ba2m_sar"]
    assert TrainConfig.from_dict(old).ba2m_sar == "none"      # written before the sigmoid SAR existed
    assert TrainConfig.from_dict(TrainConfig().to_dict()).ba2m_sar == "sigmoid"


def test_torch_init_is_uniform_within_one_over_sqrt_fan_in():
    backend.seed(0)
    model = build_model("smallcnn", "ba2m", num_classes=10, init="torch")
    for _, mod in model.named_modules():
        if isinstance(mod, (Conv2d, Linear)):
            fan_in = mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1] if isinstance(mod, Conv2d) else mod.in_features
            for p in mod.params.values():
                assert np.abs(p).max() <= 1 / math.sqrt(fan_in)
                if p.size >= 500:                                  # the spread of U(-b, b) is b / sqrt(3)
                    assert abs(p.std() * math.sqrt(3 * fan_in) - 1) < 0.1
    backend.seed(0)
    he = build_model("smallcnn", "ba2m", num_classes=10)
    assert apply_init(he, "he") is he
    with pytest.raises(ValueError, match="unknown init scheme 'xavier'"):
        build_model("smallcnn", init="xavier")


# -- the digits data set and the study -------------------------------------------------------------

def test_digits_data_set():
    pytest.importorskip("sklearn")
    from tinyba2m.data import load_dataset
    d = load_dataset("digits")
    assert d.train_images.shape == (1437, 3, 8, 8) and d.test_images.shape == (360, 3, 8, 8)
    assert d.train_images.dtype == np.uint8 and d.train_images.max() == 255 and d.num_classes == 10
    assert not d.augment and (d.train_images[:, 0] == d.train_images[:, 2]).all()
    assert set(np.unique(d.test_labels)) == set(range(10))
    assert load_dataset("digits", subset=100).train_images.shape[0] == 100


def test_study_runs_a_grid_resumes_and_summarises(tmp_path, monkeypatch):
    from tinyba2m.study import ba2m as study
    monkeypatch.setitem(study.RECIPES, "synthetic", {"train": 64, "test": 32, "classes": 10, "image_size": 12, "epochs": 1})
    args = ["--datasets", "synthetic", "--models", "smallcnn", "--placements", "every", "--inits", "he",
            "--readings", "none,sigmoid+softmax", "--seeds", "0,1", "--jobs", "1", "--out", str(tmp_path)]
    assert study.main(args) == 0
    cells = study.read_records(tmp_path / "cells.csv")
    assert sorted((c["reading"], c["seed"]) for c in cells) == [("none", "0"), ("none", "1"),
                                                                 ("sigmoid+softmax", "0"), ("sigmoid+softmax", "1")]
    assert all(c["diverged"] == "0" and 0 <= float(c["top1_population"]) <= 1 for c in cells)
    assert float(next(c for c in cells if c["reading"] == "none")["max_weight"]) == 1.0
    summary = (tmp_path / "summary.md").read_text()
    assert "| synthetic | smallcnn | every | he | sigmoid+softmax | 1.0 | 2 | 0 |" in summary
    assert (tmp_path / "summary.png").stat().st_size > 0
    assert study.main(args) == 0                                   # a rerun skips the finished cells
    assert len(study.read_records(tmp_path / "cells.csv")) == 4
    with pytest.raises(SystemExit):
        study.main(["--readings", "nonsense"])


def test_data_url_reaches_the_download(tmp_path, capsys):
    """--data-url replaces the official addresses (a refused local port: no request leaves the machine)."""
    url = "http://127.0.0.1:9/cifar-100-python.tar.gz"
    code = cli.main(["--dataset", "cifar100", "--data-dir", str(tmp_path / "data"), "--data-url", url,
                     "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and f"tried (1) {url}" in err and "toronto.edu" not in err


def test_max_weight_is_relative_to_the_batch_mean(tmp_path):
    """metrics.csv's max_weight compares across readings: w_max / mean(w) for the sum-to-one softmax too."""
    data = make_synthetic(64, 32, seed=0, num_classes=10, image_size=12)
    cfg = TrainConfig(epochs=1, batch_size=32, ba2m_normalisation="softmax_sum", progress=False, out=str(tmp_path))
    trainer = Trainer(cfg, data=data, log=lambda m: None)
    st = loop.train_epoch(trainer.model, trainer.loss_fn, trainer.optimizer, data.train_images, data.train_labels,
                          epoch=1, epochs=1, batch_size=32, rng=backend.new_host_rng(0), global_step=0,
                          lr_at=trainer.lr_at, progress=False, track_weights=True)
    mods = [m for _, m in ba2m_modules(trainer.model)]
    assert all(abs(m.last_weights.sum() - 1) < 1e-5 for m in mods)          # sum-to-one weights ...
    last = max(float(m.last_weights.max() / m.last_weights.mean()) for m in mods)
    assert 1.0 < last <= st["max_weight"] < math.e                        # ... reported relative to their mean
