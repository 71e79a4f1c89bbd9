"""Models: shapes, parameter counts, attention placement, float64 gradient checks of tiny
versions for every attention option, state_dict round trip, bad names."""
import contextlib

import pytest

from tinyba2m import backend
from tinyba2m.attention import BA2MOptions
from tinyba2m.gradcheck import check_module
from tinyba2m.models import (MODEL_NAMES, CifarResNet, SmallCNN, ZeroPadShortcut, ba2m_modules, build_model, sample_weights,
                             set_eval_weighting, zero_pad_shortcut_backward, zero_pad_shortcut_forward)

np = backend.numpy_module
ATTENTIONS = ["none", "se", "cbam", "bam", "ba2m"]
EVERY = BA2MOptions(placement="every")  # attention in both slots of the small CNN


def images(n, size=32, seed=0, channels=3):
    return np.random.default_rng(seed).standard_normal((n, channels, size, size)).astype(np.float32)


def count_attention(model):
    from tinyba2m.attention import BA2M, BAM, CBAM, SEBlock
    return sum(isinstance(m, (BA2M, SEBlock, CBAM, BAM)) for _, m in model.named_modules())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shape_and_dtype(name):
    backend.seed(0)
    model = build_model(name, "none")
    x = images(1 if name in ("resnet32", "resnet56") else 2)
    before = x.copy()
    out = model.forward(x)
    assert out.shape == (x.shape[0], 100) and backend.dtype_of(out) == np.float32
    assert np.array_equal(x, before)
    dx = model.backward(np.ones_like(out))
    assert dx.shape == x.shape and backend.dtype_of(dx) == np.float32


@pytest.mark.parametrize("attention", ["se", "cbam", "bam", "ba2m"])
def test_output_shape_with_attention(attention):
    backend.seed(0)
    for name in ("smallcnn", "resnet20"):
        model = build_model(name, attention)
        out = model.forward(images(3))
        assert out.shape == (3, 100) and backend.dtype_of(out) == np.float32


def resnet_parameter_count(n, classes):
    """Option-A CIFAR ResNet: 3x3 convs without bias, BN scale+shift, linear head."""
    convs = 3 * 16 * 9 + (2 * n) * 16 * 16 * 9 + (16 * 32 + (2 * n - 1) * 32 * 32) * 9 + (32 * 64 + (2 * n - 1) * 64 * 64) * 9
    bns = 2 * (16 + 2 * n * (16 + 32 + 64))
    return convs + bns + 64 * classes + classes


def test_parameter_counts():
    backend.seed(0)
    counts = {name: build_model(name, "none").num_parameters() for name in MODEL_NAMES}
    assert counts["resnet20"] == resnet_parameter_count(3, 100) == 275_572  # ~0.27M (0.2697M for 10 classes)
    assert counts["resnet32"] == resnet_parameter_count(5, 100)
    assert counts["resnet56"] == resnet_parameter_count(9, 100)
    assert build_model("resnet20", "none", num_classes=10).num_parameters() == resnet_parameter_count(3, 10) == 269_722
    assert counts["smallcnn"] == 3 * 16 * 9 + 16 * 32 * 9 + 32 * 64 * 9 + 2 * (16 + 32 + 64) + 64 * 100 + 100
    se = build_model("resnet20", "se", placement="every").num_parameters()
    ba2m = build_model("resnet20", "ba2m", placement="every").num_parameters()
    assert counts["resnet20"] < se < ba2m < 1.2 * counts["resnet20"]


@pytest.mark.parametrize("attention", ["se", "cbam", "ba2m"])
def test_placement(attention):
    backend.seed(0)
    assert count_attention(build_model("resnet20", attention, placement="every")) == 9
    assert count_attention(build_model("resnet32", attention, placement="last")) == 3
    last = build_model("resnet20", attention)                     # the default: the last block of each stage
    with_att = [name for name, m in last.named_modules() if name.endswith(".att")]
    assert with_att == ["stage1_block3.att", "stage2_block3.att", "stage3_block3.att"]
    assert count_attention(build_model("smallcnn", attention, placement="every")) == 2
    assert count_attention(build_model("smallcnn", attention)) == 1
    assert count_attention(build_model("resnet20", "none")) == 0


def test_bam_goes_where_the_resolution_changes():
    """BAM: one module on the output of stages 1 and 2 of a ResNet (before the next stage halves the
    map), one before each max pool of the small CNN; none inside a block."""
    backend.seed(0)
    model = build_model("resnet20", "bam", num_classes=10)
    bams = [(name, m.channels) for name, m in model.named_modules() if type(m).__name__ == "BAM"]
    assert bams == [("bam1", 16), ("bam2", 32)]
    assert not [name for name, _ in model.named_modules() if name.endswith(".att")]
    small = [(n, m.channels) for n, m in build_model("smallcnn", "bam").named_modules() if type(m).__name__ == "BAM"]
    assert [c for _, c in small] == [16, 32]


def test_bam_refuses_a_training_batch_of_one():
    from tinyba2m.attention import BAM
    with pytest.raises(ValueError, match=r"BAM\(8\): training needs a batch of at least 2 samples"):
        BAM(8).forward(images(1, size=4, channels=8))
    assert BAM(8).eval().forward(images(1, size=4, channels=8)).shape == (1, 8, 4, 4)


def test_ba2m_options_reach_every_module():
    backend.seed(0)
    model = build_model("smallcnn", "ba2m", temperature=2.0, reduction=8, placement="every")
    mods = ba2m_modules(model)
    assert len(mods) == 2 and all(m.temperature == 2.0 for _, m in mods)
    assert model.num_parameters() > build_model("smallcnn", "ba2m", placement="every").num_parameters()


def exactly_zero_gradients(model, shape, seed=0):
    """Parameters whose analytic gradient is 0 up to rounding — biases cancelled by a following BN, the
    key projections of a non-local branch with a single key, the first bias of a channel branch whose
    ReLU units are each on (or each off) for the whole batch (BN1d cancels a shift common to the
    batch). check_module then verifies that the numerical gradient is ~0 too (an absolute check, as a
    relative error of noise means nothing). Some of these zeros depend on the input, so this draws the
    input and upstream gradient exactly as ``check_module(..., seed=seed)`` does: the zeros found are
    those of the very check."""
    model.astype(backend.float64)
    model.train()
    saved = model.state_dict()
    rng = backend.new_host_rng(seed)
    out = model.forward(rng.standard_normal(shape))
    model.zero_grad()
    model.backward(rng.standard_normal(out.shape))
    model.load_state_dict(saved)  # undo the running-statistics update
    return tuple(name for name, mod, key in model.named_parameters() if np.abs(mod.grads[key]).max() < 1e-10)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_gradcheck_tiny_smallcnn(attention):
    backend.seed(1)
    model = SmallCNN(num_classes=5, attention=attention, widths=(4, 8, 8), ba2m=EVERY)
    zero = exactly_zero_gradients(model, (4, 3, 8, 8))
    assert bool(zero) == (attention in ("ba2m", "bam"))  # BA²M's and BAM's biases before a BN; SE, CBAM have no BN
    r = check_module(model, (4, 3, 8, 8), method="auto", max_full=16, name=f"smallcnn-{attention}", known_zero=zero)
    assert r.passed, str(r)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_gradcheck_tiny_resnet(attention):
    backend.seed(2)
    model = CifarResNet(depth=8, num_classes=4, attention=attention, widths=(4, 4, 8))
    zero = exactly_zero_gradients(model, (3, 3, 8, 8))
    # ~100 parameter tensors: one random direction each (two forward passes) keeps this to seconds.
    # h = 1e-5: the sigmoid SAR makes the attention parameters' directional derivatives small next
    # to the loss, so at h = 1e-6 their central differences are rounding noise (BA²M, worst relative
    # error 1.1e-5 at h = 1e-6 with NumPy 2.4, 3.4e-5 with NumPy 1.23; the max's kinks dominate at 1e-4).
    # tol = 1e-5, not the default 1e-6: at h = 1e-5 what is left is still rounding noise,
    # eps |L| / (h |g.v|), largest where the one random direction v is nearly orthogonal to the
    # gradient g; it depends on the BLAS's summation order (worst 2.6e-7 with NumPy 2.4, 1.8e-6 with
    # NumPy 1.23, at stage2_block1.att.channel_branch.3.w). A wrong wiring gives errors of 1e-3 and
    # more; each layer's own gradient is checked at 1e-6 with full differences in its unit tests.
    # The check's seed stays 0: some other seeds put a ReLU or max kink within h of the input (BA²M,
    # seeds 2 and 7: 1.8e-3 and 1.2e-2, the same with NumPy 1.23 and 2.4).
    r = check_module(model, (3, 3, 8, 8), method="direction", n_directions=1, name=f"resnet8-{attention}",
                     known_zero=zero, h=1e-5, tolerance=1e-5)
    assert r.passed, str(r)


def fallback_warning(expected: bool):
    """Asserts the one warning of an untrained BA²M evaluated with population weighting."""
    return pytest.warns(RuntimeWarning, match="'population' has no training statistics") if expected else contextlib.nullcontext()


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_state_dict_round_trip(attention):
    backend.seed(0)
    a = SmallCNN(num_classes=7, attention=attention, widths=(4, 8, 8), ba2m=EVERY)
    x = images(6, 16)
    a.forward(x)  # move the BN running statistics away from their initial values
    backend.seed(123)
    b = SmallCNN(num_classes=7, attention=attention, widths=(4, 8, 8), ba2m=EVERY)
    a.eval()
    b.eval()
    with fallback_warning(attention == "ba2m"):  # b never trained: its population weighting falls back to batch
        assert not np.allclose(a.forward(x), b.forward(x))
    state = a.state_dict()
    assert any(k.endswith("running_mean") for k in state)
    b.load_state_dict(state)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    other = SmallCNN(num_classes=7, attention=attention, widths=(4, 8, 16), ba2m=EVERY)
    with pytest.raises(ValueError, match="expected shape"):
        other.load_state_dict(state)


def test_eval_weighting_switch_and_sample_weights():
    backend.seed(0)
    model = build_model("smallcnn", "ba2m", placement="every")
    assert sample_weights(build_model("smallcnn", "none")) is None
    x = images(8)
    model.forward(x)
    w = backend.to_host(sample_weights(model))
    assert w.shape == (8,) and abs(w.mean() - 1.0) < 1e-5 and w.std() > 0
    model.eval()
    assert set_eval_weighting(model, "uniform") == 2
    model.forward(x)
    np.testing.assert_allclose(backend.to_host(sample_weights(model)), np.ones(8), rtol=1e-6)
    assert set_eval_weighting(model, "batch") == 2
    model.forward(x)
    assert backend.to_host(sample_weights(model)).std() > 0
    # batch of one: both modes agree
    one = x[:1]
    out_b = model.forward(one)
    set_eval_weighting(model, "uniform")
    np.testing.assert_allclose(out_b, model.forward(one), rtol=1e-6)
    with pytest.raises(ValueError, match="mode must be one of population, batch, uniform"):
        set_eval_weighting(model, "mean")


def test_zero_pad_shortcut():
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    y, cache = zero_pad_shortcut_forward(x, 7, 2)
    assert y.shape == (2, 7, 2, 2) and backend.dtype_of(y) == np.float32
    np.testing.assert_array_equal(y[:, 2:5], x[:, :, ::2, ::2])
    assert not y[:, :2].any() and not y[:, 5:].any()
    dx = zero_pad_shortcut_backward(np.ones_like(y), cache)
    assert dx.sum() == 2 * 3 * 2 * 2 and dx[0, 0, 0, 0] == 1 and dx[0, 0, 1, 1] == 0
    with pytest.raises(ValueError, match="zero_pad_shortcut: out_channels must be >= the input channels 3"):
        zero_pad_shortcut_forward(x, 2, 2)
    with pytest.raises(ValueError, match=r"ZeroPadShortcut\(4->8\): expected input with 4 channels"):
        ZeroPadShortcut(4, 8).forward(x)


def test_bad_names():
    with pytest.raises(ValueError, match="unknown model 'resnet18': expected one of smallcnn, resnet20, resnet32, resnet56"):
        build_model("resnet18", "none")
    with pytest.raises(ValueError, match="unknown attention 'eca'"):
        build_model("resnet20", "eca")
    with pytest.raises(ValueError, match="unknown BA²M placement 'first'"):
        build_model("resnet20", "ba2m", placement="first")
    with pytest.raises(ValueError, match="depth must be 6n \\+ 2"):
        CifarResNet(depth=21)
    with pytest.raises(ValueError, match="attention 'none' takes no BA²M options"):
        build_model("smallcnn", "none", temperature=2.0)
    with pytest.raises(ValueError, match="attention 'se' takes only the reduction and placement options"):
        build_model("smallcnn", "se", temperature=2.0)
    with pytest.raises(ValueError, match="attention 'bam' takes only the reduction and dilation options"):
        build_model("smallcnn", "bam", placement="every")


def test_zero_init_residual_starts_every_block_as_identity():
    backend.seed(0)
    model = build_model("resnet20", "ba2m", zero_init_residual=True)
    assert all(not b.bn2.params["gamma"].any() for b in model.blocks)
    x = images(16)
    model.forward(x)
    for _, m in ba2m_modules(model):  # all-zero features into BA²M: every sample gets weight 1
        np.testing.assert_allclose(backend.to_host(m.last_weights), np.ones(16), rtol=1e-5)
    backend.seed(0)
    assert build_model("resnet20", "ba2m").blocks[0].bn2.params["gamma"].all()  # off by default
    assert build_model("smallcnn", "ba2m", zero_init_residual=True).num_parameters() > 0  # ignored, no residuals
