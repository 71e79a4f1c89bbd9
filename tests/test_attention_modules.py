"""The BA²M branches, the SE block and the BA2M module: finite differences for the input and
every parameter (train mode), the cross-sample gradient on its own, the cheap non-local form,
modes, shapes and bad input."""
import pytest

from tinyba2m import backend
from tinyba2m.attention import BA2M, ChannelBranch, GlobalSpatialBranch, LocalSpatialBranch, SEBlock
from tinyba2m.gradcheck import check_module, numerical_gradient

np = backend.numpy_module
SHAPE = (3, 8, 4, 4)


def x_of(xp, shape, seed=0, dtype="float64"):
    return xp.asarray(backend.new_host_rng(seed).standard_normal(shape).astype(dtype))


def host(a):
    return backend.to_host(a)


def ba2m(seed=0, channels=8, dtype=backend.float64, **kwargs):
    backend.seed(seed)
    return BA2M(channels, **kwargs).astype(dtype)


def known_zero(module, shape, train=True):
    module.astype(backend.float64).train(train)
    module.forward(x_of(backend.get_xp(), shape, 99))
    return module.zero_gradient_parameters()


# -- finite differences: input and every parameter, train mode -----------------------------------
BRANCH_CASES = {
    "channel": (lambda: ChannelBranch(8), ("3.b",)),
    "local": (lambda: LocalSpatialBranch(8), ("0.b", "3.b", "6.b")),
    "global": (lambda: GlobalSpatialBranch(8), ("phi.b", "g.b", "w_z.b")),
    "global_plain": (lambda: GlobalSpatialBranch(8, value_projection_first=False), ("phi.b", "g.b", "w_z.b")),
    "global_no_subsample": (lambda: GlobalSpatialBranch(8, subsample=1), ("phi.b", "g.b", "w_z.b")),
    "se": (lambda: SEBlock(8, reduction=2), ()),
}


@pytest.mark.parametrize("case", sorted(BRANCH_CASES))
def test_branch_finite_differences(xp, case):
    make, zero = BRANCH_CASES[case]
    backend.seed(0)
    r = check_module(make(), SHAPE, method="full", known_zero=zero, name=case)
    assert r.passed, str(r)
    assert set(r.errors) >= {"input"} and len(r.errors) == 1 + len(list(make().named_parameters()))


@pytest.mark.parametrize("kwargs", [{}, {"normalisation": "sigmoid", "temperature": 0.5},
                                    {"branches": ("local", "global"), "temperature": 2.0}, {"branches": ("channel",)}])
def test_ba2m_finite_differences_train_mode(xp, kwargs):
    module = ba2m(**kwargs)
    zero = known_zero(module, SHAPE)
    # h = 1e-5: at the default 1e-6 the small gradients of the branch BNs' gamma (reached through
    # the SAR sigmoid) are rounding-noise bound, worst 3.8e-7 (sigmoid, tau 0.5; NumPy 2.4), 3.0e-7
    # (NumPy 1.23) against the tolerance 1e-6; at 1e-5 every case is below 2e-8 on both.
    r = check_module(module, SHAPE, method="full", known_zero=zero, h=1e-5)
    assert r.passed, str(r)


def test_zero_gradient_parameters_are_exactly_zero(xp):
    module = ba2m()
    module.forward(x_of(xp, SHAPE))
    module.zero_grad()
    module.backward(x_of(xp, SHAPE, 1))
    zero = set(module.zero_gradient_parameters())
    assert zero == {"channel_branch.3.b", "local_branch.0.b", "local_branch.3.b", "local_branch.6.b",
                    "global_branch.phi.b", "global_branch.g.b", "global_branch.w_z.b"}
    for name, mod, key in module.named_parameters():
        size = float(abs(mod.grads[key]).max())
        assert (size < 1e-12) if name in zero else (size > 1e-6), name


# -- the cross-sample terms alone ------------------------------------------------------------------
def cross_sample_gradient(module, x, i=0, j=1, numeric=True):
    """(analytic, numerical) gradient reaching sample j's input from the loss on sample i only,
    L = sum(G_i * Y_i), i != j (numerical: None when ``numeric`` is False)."""
    xp = backend.array_module(x)
    g = x_of(xp, x.shape, 7)
    mask = xp.zeros((x.shape[0], 1, 1, 1))
    mask[i] = 1.0
    dout = g * mask
    saved = {(id(m), k): v.copy() for _, m in module.named_modules() for k, v in m.buffers.items()}

    def run_j(xj):
        for _, m in module.named_modules():
            for k in m.buffers:
                m.buffers[k] = saved[(id(m), k)].copy()
        xv = x.copy()
        xv[j] = xj
        return module.forward(xv)

    run_j(x[j])
    analytic = host(module.backward(dout))[j]
    return analytic, (host(numerical_gradient(run_j, x[j].copy(), dout)) if numeric else None)


def test_cross_sample_gradient_softmax_train(xp):
    module = ba2m()
    ana, num = cross_sample_gradient(module, x_of(xp, SHAPE))
    assert np.allclose(ana, num, atol=1e-8, rtol=1e-6)
    assert np.abs(ana).max() > 1e-3                         # sample 0's loss reaches sample 1


def test_cross_sample_gradient_softmax_eval_comes_from_the_weighting(xp):
    module = ba2m(eval_weighting="batch").eval()            # running statistics: BN couples nothing
    ana, num = cross_sample_gradient(module, x_of(xp, SHAPE))
    assert np.allclose(ana, num, atol=1e-8, rtol=1e-6)
    assert np.abs(ana).max() > 1e-3


def test_cross_sample_gradient_sigmoid(xp):
    """With the per-sample sigmoid, no gradient crosses samples through the weights: it is exactly
    zero with running statistics; in train mode what remains comes only through the batch
    statistics of the branch BNs (checked against finite differences too)."""
    module = ba2m(normalisation="sigmoid").eval()
    ana, num = cross_sample_gradient(module, x_of(xp, SHAPE))
    assert not ana.any() and np.abs(num).max() < 1e-8
    module.train()
    ana, num = cross_sample_gradient(module, x_of(xp, SHAPE))
    assert np.allclose(ana, num, atol=1e-8, rtol=1e-6)


def test_softmax_cross_sample_gradient_exceeds_bn_only_coupling(xp):
    """Train mode: the softmax adds the weighting coupling on top of the BN coupling both share."""
    x = x_of(xp, SHAPE)
    soft, _ = cross_sample_gradient(ba2m(), x, numeric=False)
    sig, _ = cross_sample_gradient(ba2m(normalisation="sigmoid"), x, numeric=False)
    assert not np.allclose(soft, sig, atol=1e-6)


# -- the cheap non-local form -------------------------------------------------------------------
@pytest.mark.parametrize("shape,subsample", [((3, 8, 6, 6), 2), ((2, 8, 5, 7), 2), ((2, 8, 8, 8), 4), ((2, 8, 3, 3), 1)])
def test_value_projection_first_equals_plain_form(xp, shape, subsample):
    backend.seed(3)
    cheap = GlobalSpatialBranch(8, subsample=subsample).astype(backend.float64)
    backend.seed(3)
    plain = GlobalSpatialBranch(8, subsample=subsample, value_projection_first=False).astype(backend.float64)
    for m in (cheap, plain):        # a non-zero W_z bias so its pass-through is exercised
        m.w_z.params["b"] = xp.asarray([0.7])
    x, dy = x_of(xp, shape), x_of(xp, (shape[0], 1) + shape[2:], 1)
    assert np.allclose(host(cheap.forward(x)), host(plain.forward(x)), atol=1e-12)
    cheap.zero_grad(), plain.zero_grad()
    assert np.allclose(host(cheap.backward(dy)), host(plain.backward(dy)), atol=1e-12)
    for (name, m1, k), (_, m2, _) in zip(cheap.named_parameters(), plain.named_parameters()):
        assert np.allclose(host(m1.grads[k]), host(m2.grads[k]), atol=1e-12), name


def test_global_branch_workspace_is_reused_and_follows_shape_and_dtype(xp):
    """The attention-matrix workspace: reused (as a prefix view) for a smaller batch, regrown for
    a larger one, replaced on a dtype change — results always those of a fresh branch."""
    def fresh():
        backend.seed(4)
        return GlobalSpatialBranch(8)

    kept = fresh().astype(backend.float64)
    for shape, dtype in (((3, 8, 6, 6), "float64"), ((2, 8, 6, 6), "float64"), ((4, 8, 6, 6), "float64"),
                         ((4, 8, 6, 6), "float32")):
        kept.astype(dtype)
        new = fresh().astype(dtype)
        x, dy = x_of(xp, shape, dtype=dtype), x_of(xp, (shape[0], 1) + shape[2:], 1, dtype=dtype)
        assert np.allclose(host(kept.forward(x)), host(new.forward(x)), atol=1e-6)
        assert np.allclose(host(kept.backward(dy)), host(new.backward(dy)), atol=1e-6)
        attention = kept.cache[0][3]
        assert attention.dtype == x.dtype and attention.shape == (shape[0], 36, 9)
    workspace = kept._workspace
    kept.forward(x_of(xp, (2, 8, 6, 6), dtype="float32"))
    assert kept._workspace is workspace                    # a smaller batch reuses the buffer


# -- modes, records, contracts -----------------------------------------------------------------
def test_records_weights_and_sar(xp):
    module = ba2m(dtype=backend.float32)
    x = x_of(xp, (4, 8, 6, 6), dtype="float32")
    y = module.forward(x)
    w, a = module.last_weights, module.last_sar
    assert y.dtype == xp.float32 and w.dtype == xp.float32 and w.shape == (4,) and a.shape == (4,)
    assert type(w) is type(x)
    assert abs(float(w.mean()) - 1.0) < 1e-5
    assert np.allclose(host(y), host(x) * host(w)[:, None, None, None], rtol=1e-6)
    dx = module.backward(xp.ones_like(y))
    assert dx.dtype == xp.float32 and dx.shape == x.shape
    assert all(mod.grads[k].dtype == xp.float32 for _, mod, k in module.named_parameters())


def test_uniform_eval_is_identity_and_skips_branches(xp):
    module = ba2m(eval_weighting="uniform").eval()
    x = x_of(xp, SHAPE)
    y = module.forward(x)
    assert bool((y == x).all()) and y is not x
    assert host(module.last_weights).tolist() == [1.0, 1.0, 1.0] and np.isnan(host(module.last_sar)).all()
    dy = x_of(xp, SHAPE, 1)
    assert bool((module.backward(dy) == dy).all())
    module.eval_weighting = "batch"
    module.forward(x)
    assert not np.allclose(host(module.last_weights), 1.0)
    with pytest.raises(ValueError, match="BA2M: eval_weighting must be one of"):
        module.eval_weighting = "mean"


def test_batch_of_one_is_identity(xp):
    x = x_of(xp, (1, 8, 4, 4), dtype="float32")
    for mode in ("train", "batch", "uniform"):
        module = ba2m(dtype=backend.float32, eval_weighting="batch" if mode != "uniform" else "uniform")
        module.train(mode == "train")
        y = module.forward(x)
        assert bool((y == x).all()) and float(module.last_weights[0]) == 1.0
        assert bool((module.backward(x) == x).all())
    with pytest.raises(ValueError, match="BA2M.*sigmoid.*at least 2 samples"):
        ba2m(normalisation="sigmoid").forward(x_of(xp, (1, 8, 4, 4)))
    y = ba2m(normalisation="sigmoid").eval().forward(x_of(xp, (1, 8, 4, 4)))
    assert y.shape == (1, 8, 4, 4)


def test_train_updates_running_statistics_and_eval_does_not(xp):
    module = ba2m()
    before = {k: host(v).copy() for k, v in module.state_dict().items() if "running" in k}
    module.forward(x_of(xp, SHAPE))
    after = {k: host(v) for k, v in module.state_dict().items() if "running" in k}
    assert all(not np.allclose(before[k], after[k]) for k in before)
    module.eval().forward(x_of(xp, SHAPE, 3))
    assert all(np.array_equal(after[k], host(v)) for k, v in module.state_dict().items() if "running" in k)


def test_forward_does_not_mutate_input(xp):
    for module in (ba2m(), SEBlock(8).astype(backend.float64)):
        x = x_of(xp, SHAPE)
        keep = x.copy()
        y = module.forward(x)
        module.backward(xp.ones_like(y))
        assert bool((x == keep).all())


# -- shapes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 8, 5, 7), (3, 8, 1, 6), (3, 8, 6, 1), (4, 8, 1, 1), (2, 3, 4, 4)])
def test_shapes(xp, shape):
    module = ba2m(channels=shape[1])
    y = module.forward(x_of(xp, shape))
    assert y.shape == shape
    assert module.backward(x_of(xp, shape, 1)).shape == shape
    h, w = shape[2:]
    expected_keys = (h // 2) * (w // 2) if min(h, w) >= 2 else h * w
    assert module.global_branch.key_positions() == expected_keys


def test_small_channel_count_and_subsample_off_finite_differences(xp):
    """C = 3 < reduction 16 (hidden width 4) on a 5x1 map (subsampling switched off)."""
    module = ba2m(channels=3)
    assert module.channel_branch.hidden == 4 and module.global_branch.hidden == 4
    zero = known_zero(module, (3, 3, 5, 1))
    r = check_module(module, (3, 3, 5, 1), method="auto", max_full=128, known_zero=zero)
    assert r.passed, str(r)


def test_odd_map_finite_differences(xp):
    module = ba2m()
    zero = known_zero(module, (2, 8, 5, 3))
    r = check_module(module, (2, 8, 5, 3), method="auto", max_full=128, known_zero=zero)
    assert r.passed, str(r)


# -- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("make,label", [(lambda: BA2M(8), "BA2M"), (lambda: SEBlock(8), "SEBlock"),
                                        (lambda: ChannelBranch(8), "ChannelBranch"),
                                        (lambda: LocalSpatialBranch(8), "LocalSpatialBranch"),
                                        (lambda: GlobalSpatialBranch(8), "GlobalSpatialBranch")])
def test_bad_input_is_clear(xp, make, label):
    module = make()
    with pytest.raises(ValueError, match=rf"{label}\(8\): built for 8 channels, got an input with 6"):
        module.forward(x_of(xp, (2, 6, 4, 4), dtype="float32"))
    with pytest.raises(ValueError, match=rf"{label}\(8\): expected a 4-D input \(N, C, H, W\)"):
        module.forward(x_of(xp, (2, 8, 4), dtype="float32"))


def test_bad_construction_is_clear():
    with pytest.raises(ValueError, match="BA2M: branches must be a non-empty subset"):
        BA2M(8, branches=())
    with pytest.raises(ValueError, match="BA2M: branches must be a non-empty subset"):
        BA2M(8, branches=("channel", "spatial"))
    with pytest.raises(ValueError, match="BA2M: normalisation must be one of"):
        BA2M(8, normalisation="tanh")
    with pytest.raises(ValueError, match="BA2M: temperature must be a number > 0"):
        BA2M(8, temperature=0)
    with pytest.raises(ValueError, match="BA2M: eval_weighting must be one of"):
        BA2M(8, eval_weighting="none")
    with pytest.raises(ValueError, match="GlobalSpatialBranch: subsample must be an integer >= 1"):
        BA2M(8, subsample=0)


# -- one options object, the children, the declared zero gradients -------------------------------
def test_one_options_object_reaches_the_children():
    from tinyba2m.attention import BA2MOptions
    from tinyba2m.models import ba2m_modules, build_model
    opts = BA2MOptions(temperature=2.0, branches=("global", "channel"), sar_activation="none",
                       normalisation="softmax_sum", placement="last")
    m = BA2M(8, opts)
    assert m.branches == ("channel", "global") and m.temperature == 2.0 and m.normalisation == "softmax_sum"
    assert (m.sar.activation, m.weighting.normalisation, m.weighting.temperature) == ("none", "softmax_sum", 2.0)
    assert m.options is opts                                                   # passed on untouched
    assert [name for name, _ in m.children()] == ["channel_branch", "global_branch", "sar", "weighting"]
    assert all(k.split(".")[0] in ("channel_branch", "global_branch", "weighting") for k in m.state_dict())
    assert {k for k in m.state_dict() if k.startswith("weighting.")} == {"weighting.population_log_norm",
                                                                         "weighting.population_batch_size"}
    with pytest.raises(TypeError, match="BA2M: give a BA2MOptions or option keywords, not both"):
        BA2M(8, opts, normalisation="softmax")
    backend.seed(0)
    model = build_model("resnet20", "ba2m", ba2m=opts)
    assert all(mod.options is opts for _, mod in ba2m_modules(model)) and len(ba2m_modules(model)) == 3
    with pytest.raises(TypeError, match="not both"):
        build_model("resnet20", "ba2m", ba2m=opts, placement="every")
    with pytest.raises(ValueError, match="BA2M: temperature must be a number > 0"):
        BA2MOptions(temperature=-1.0)


def test_branches_declare_their_bias_before_bn_by_layer():
    assert ChannelBranch(8).bias_before_bn == ("3.b",) and ChannelBranch(8).output_shift == "4.beta"
    local = LocalSpatialBranch(8)
    assert local.bias_before_bn == ("0.b", "3.b", "6.b") and local.output_shift == "7.beta"
    assert set(local.bias_before_bn) <= {q for q, _, _ in local.named_parameters()}
    g = GlobalSpatialBranch(8)
    assert g.bias_before_bn == ("g.b", "w_z.b") and g.output_shift == "bn.beta"
    assert local.eval().zero_gradient_parameters() == () and local.zero_gradient_parameters(shift_free=True) == ("7.beta",)
