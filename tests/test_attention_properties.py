"""Properties of BA²M checked on many small random cases (hypothesis): batch permutation
equivariance, mean weight 1, shift invariance, batch of one, eval-mode independence from
batch-mates, the sigmoid variant's lack of coupling, fast SAR == broadcast reference (with
ties), cheap non-local form == plain form."""
from hypothesis import assume, example, given
from hypothesis import strategies as st
from strategies import given_settings

from tinyba2m import backend
from tinyba2m.attention import BA2M, GlobalSpatialBranch
from tinyba2m.attention.sar import (sar_fusion_backward, sar_fusion_forward, sar_fusion_reference_backward,
                                    sar_fusion_reference_forward)
from tinyba2m.attention.weighting import (batch_softmax_weighting_backward, batch_softmax_weighting_forward,
                                          sigmoid_weighting_backward, sigmoid_weighting_forward)

np = backend.numpy_module
seeds = st.integers(0, 2**16)
temperatures = st.sampled_from([0.25, 1.0, 4.0])


def host(a):
    return backend.to_host(a)


def normal(xp, seed, shape, scale=1.0):
    return xp.asarray(scale * backend.new_host_rng(seed).standard_normal(shape))


def module(seed, channels=4, **kwargs):
    backend.seed(seed)
    return BA2M(channels, **kwargs).astype(backend.float64)


@given_settings(max_examples=12)
@given(seed=seeds, n=st.integers(2, 5), h=st.integers(1, 5), w=st.integers(1, 5),
       normalisation=st.sampled_from(["softmax", "sigmoid"]), data=st.data())
def test_batch_permutation_permutes_outputs_and_input_gradients(xp, seed, n, h, w, normalisation, data):
    perm = data.draw(st.permutations(list(range(n))))
    x, dy = normal(xp, seed, (n, 4, h, w)), normal(xp, seed + 1, (n, 4, h, w))
    m = module(seed % 7, normalisation=normalisation)
    y, dx = host(m.forward(x)), host(m.backward(dy))
    wts = host(m.last_weights)
    m2 = module(seed % 7, normalisation=normalisation)
    yp, dxp = host(m2.forward(x[perm])), host(m2.backward(dy[perm]))
    assert np.allclose(yp, y[perm], atol=1e-9)
    assert np.allclose(dxp, dx[perm], atol=1e-9)
    assert np.allclose(host(m2.last_weights), wts[perm], atol=1e-12)


@given_settings()
@given(seed=seeds, n=st.integers(1, 40), tau=temperatures, scale=st.sampled_from([0.1, 1.0, 30.0]),
       shift=st.floats(-1e3, 1e3))
def test_weights_mean_one_and_shift_invariance(xp, seed, n, tau, scale, shift):
    a = normal(xp, seed, (n,), scale)
    x = normal(xp, seed + 1, (n, 2))
    _, (_, w, _) = batch_softmax_weighting_forward(x, a, tau)
    _, (_, w_shift, _) = batch_softmax_weighting_forward(x, a + shift, tau)
    assert abs(float(w.mean()) - 1.0) < 1e-12
    assert np.allclose(host(w), host(w_shift), rtol=1e-9, atol=1e-12)


@given_settings(max_examples=10)
@given(seed=seeds, n=st.integers(2, 6))
def test_module_weights_mean_one(xp, seed, n):
    m = module(seed % 5)
    m.forward(normal(xp, seed, (n, 4, 3, 3)))
    assert abs(float(m.last_weights.mean()) - 1.0) < 1e-12
    m.eval_weighting = "batch"  # the eval mode that is a softmax over the batch ("population" is per sample)
    m.eval().forward(normal(xp, seed + 1, (n, 4, 3, 3)))
    assert abs(float(m.last_weights.mean()) - 1.0) < 1e-12


@given_settings(max_examples=10)
@given(seed=seeds, h=st.integers(1, 5), w=st.integers(1, 5), training=st.booleans(),
       eval_weighting=st.sampled_from(["batch", "uniform"]), tau=temperatures)
def test_batch_of_one_gives_weight_one_and_identity(xp, seed, h, w, training, eval_weighting, tau):
    m = module(seed % 5, eval_weighting=eval_weighting, temperature=tau).train(training)
    x = normal(xp, seed, (1, 4, h, w))
    y = m.forward(x)
    assert bool((y == x).all()) and float(m.last_weights[0]) == 1.0
    dy = normal(xp, seed + 1, (1, 4, h, w))
    assert bool((m.backward(dy) == dy).all())
    _, (_, w1, _) = batch_softmax_weighting_forward(x, normal(xp, seed, (1,), 50.0), tau)
    assert float(w1[0]) == 1.0


@given_settings(max_examples=10)
@given(seed=seeds, n=st.integers(2, 4))
def test_eval_uniform_ignores_batch_mates_and_batch_does_not(xp, seed, n):
    m = module(seed % 5)
    m.forward(normal(xp, seed + 5, (6, 4, 4, 4)))      # some running statistics
    m.eval()
    x = normal(xp, seed, (n, 4, 4, 4))
    other = x.copy()
    other[1:] = normal(xp, seed + 1, (n - 1, 4, 4, 4), 3.0)
    m.eval_weighting = "uniform"
    assert bool((m.forward(x)[0] == m.forward(other)[0]).all())
    m.eval_weighting = "batch"
    y0, y1 = host(m.forward(x)[0]), host(m.forward(other)[0])
    assert not np.allclose(y0, y1, rtol=1e-6, atol=0)


@given_settings(max_examples=10)
@given(seed=seeds, n=st.integers(2, 5), tau=temperatures)
def test_sigmoid_variant_has_no_cross_sample_gradient(xp, seed, n, tau):
    # the weighting op alone: da_j does not depend on dY_i for i != j
    x, a = normal(xp, seed, (n, 2, 2)), normal(xp, seed + 1, (n,))
    dy = xp.zeros((n, 2, 2))
    dy[0] = normal(xp, seed + 2, (2, 2))
    _, cache = sigmoid_weighting_forward(x, a, tau)
    dx, da = sigmoid_weighting_backward(dy, cache)
    assert not bool(dx[1:].any()) and not bool(da[1:].any()) and bool(da[0] != 0)
    _, cache = batch_softmax_weighting_forward(x, a, tau)
    _, da_soft = batch_softmax_weighting_backward(dy, cache)
    assert bool((da_soft[1:] != 0).all())
    # the whole module with running statistics (BN couples nothing)
    m = module(seed % 5, normalisation="sigmoid", temperature=tau).eval()
    xm = normal(xp, seed + 3, (n, 4, 3, 3))
    m.forward(xm)
    dym = xp.zeros((n, 4, 3, 3))
    dym[0] = 1.0
    assert not bool(m.backward(dym)[1:].any())


@given_settings()
@given(seed=seeds, n=st.integers(1, 3), c=st.integers(1, 9), h=st.integers(1, 4), w=st.integers(1, 4),
       levels=st.integers(1, 4), keep=st.sampled_from([(0, 1, 2), (0, 1), (0, 2), (1, 2), (0,), (1,), (2,)]))
@example(seed=0, n=3, c=4, h=2, w=3, levels=1, keep=(0, 1, 2))   # every value tied across all three maps
@example(seed=1, n=2, c=8, h=3, w=3, levels=2, keep=(1, 2))      # LS against GS, ties in most pixels
def test_fast_sar_equals_broadcast_reference(xp, seed, n, c, h, w, levels, keep):
    """Few distinct values, so ties are everywhere: the tie rule must route like argmax does."""
    rng = backend.new_host_rng(seed)
    maps = [xp.asarray(rng.integers(0, levels, s).astype("float64")) for s in ((n, c), (n, h, w), (n, h, w))]
    maps = [m if i in keep else None for i, m in enumerate(maps)]
    a, cache = sar_fusion_forward(*maps)
    ref, ref_cache = sar_fusion_reference_forward(*maps, hw=(h, w))
    assert np.allclose(host(a), host(ref), atol=1e-12)
    da = xp.asarray(rng.standard_normal(n))
    for got, want in zip(sar_fusion_backward(da, cache), sar_fusion_reference_backward(da, ref_cache)):
        assert (got is None) == (want is None)
        if got is not None:
            assert np.allclose(host(got), host(want), atol=1e-12)


@given_settings(max_examples=12)
@given(seed=seeds, n=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6), subsample=st.sampled_from([1, 2, 4]),
       training=st.booleans())
def test_cheap_nonlocal_form_equals_plain_form(xp, seed, n, h, w, subsample, training):
    """Same output, input gradient and parameter gradients whichever side of the attention
    product the value projection W_z is applied on."""
    assume(not training or n * h * w >= 2)              # BN needs two values per channel to train
    backend.seed(seed)
    cheap = GlobalSpatialBranch(4, subsample=subsample).astype(backend.float64).train(training)
    backend.seed(seed)
    plain = GlobalSpatialBranch(4, subsample=subsample, value_projection_first=False).astype(backend.float64).train(training)
    for m in (cheap, plain):
        m.w_z.params["b"] = xp.asarray([float(seed % 5) - 2.0])
    x, dy = normal(xp, seed, (n, 4, h, w)), normal(xp, seed + 1, (n, 1, h, w))
    assert np.allclose(host(cheap.forward(x)), host(plain.forward(x)), atol=1e-10)
    assert np.allclose(host(cheap.backward(dy)), host(plain.backward(dy)), atol=1e-10)
    cheap_grads = {name: host(mod.grads[key]) for name, mod, key in cheap.named_parameters()}
    plain_grads = {name: host(mod.grads[key]) for name, mod, key in plain.named_parameters()}
    assert sorted(cheap_grads) == sorted(plain_grads)
    for name, g in cheap_grads.items():
        assert np.allclose(g, plain_grads[name], atol=1e-10), name
