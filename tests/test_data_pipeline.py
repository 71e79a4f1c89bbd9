"""Input pipeline: normalisation, crop/flip against a per-sample loop, batching and its seeding."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyba2m import backend
from tinyba2m.data import (CIFAR100_MEAN, CIFAR100_STD, LAST_BATCH_POLICY, BatchIterator, crop_flip,
                           iterate_batches, normalize, num_batches, random_crop_flip)


def images(n=10, c=3, h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def host(a):
    return backend.to_host(a)


def naive_crop_flip(x, oy, ox, flips, p):
    """Reference: one image at a time."""
    out = np.empty_like(x)
    h, w = x.shape[2:]
    for i in range(x.shape[0]):
        padded = np.zeros((x.shape[1], h + 2 * p, w + 2 * p), dtype=x.dtype)
        padded[:, p:p + h, p:p + w] = x[i]
        crop = padded[:, oy[i]:oy[i] + h, ox[i]:ox[i] + w]
        out[i] = crop[:, :, ::-1] if flips[i] else crop
    return out


# --- normalize -----------------------------------------------------------------------------

def test_normalize_formula_dtype_and_device(xp):
    u = images(4, h=3, w=3)
    for src in (u, xp.asarray(u)):
        out = normalize(src)
        assert backend.array_module(out) is xp and out.dtype == np.float32 and out.shape == u.shape
        want = (u.astype(np.float64) / 255 - np.array(CIFAR100_MEAN).reshape(1, 3, 1, 1)) / np.array(CIFAR100_STD).reshape(1, 3, 1, 1)
        np.testing.assert_allclose(host(out), want, rtol=1e-5, atol=1e-5)


def test_normalize_of_the_mean_colour_is_zero(xp):
    x = np.broadcast_to(np.array(CIFAR100_MEAN, dtype=np.float32).reshape(1, 3, 1, 1), (2, 3, 4, 4))
    np.testing.assert_allclose(host(normalize(xp.asarray(x))), 0.0, atol=1e-6)


def test_normalize_rejects_bad_input(xp):
    with pytest.raises(ValueError, match="normalize: expected images of shape"):
        normalize(xp.zeros((3, 32, 32), dtype=xp.uint8))
    with pytest.raises(ValueError, match="normalize: images have 1 channels"):
        normalize(xp.zeros((2, 1, 4, 4), dtype=xp.uint8))


# --- crop and flip ---------------------------------------------------------------------------

def test_no_padding_no_flip_is_identity(xp):
    x = xp.asarray(images())
    out = random_crop_flip(x, np.random.default_rng(0), padding=0, flip=False)
    assert out.dtype == x.dtype and backend.array_module(out) is xp
    np.testing.assert_array_equal(host(out), host(x))


def test_flip_reverses_columns(xp):
    x = images()
    n = x.shape[0]
    out = crop_flip(xp.asarray(x), np.zeros(n, int), np.zeros(n, int), np.ones(n, bool), padding=0)
    np.testing.assert_array_equal(host(out), x[:, :, :, ::-1])


@pytest.mark.parametrize("padding", [1, 4])
def test_random_crop_flip_matches_per_sample_loop(xp, padding):
    x = images(12, h=8, w=7, seed=1)
    out = random_crop_flip(xp.asarray(x), np.random.default_rng(42), padding=padding)
    r = np.random.default_rng(42)                       # the documented draw order: oy, ox, flips
    oy = r.integers(0, 2 * padding + 1, size=12)
    ox = r.integers(0, 2 * padding + 1, size=12)
    flips = r.random(12) < 0.5
    assert flips.any() and not flips.all() and (oy != ox).any()
    np.testing.assert_array_equal(host(out), naive_crop_flip(x, oy, ox, flips, padding))


def test_crop_keeps_float_dtype_and_pads_with_zeros(xp):
    x = xp.ones((1, 1, 4, 4), dtype=xp.float32)
    out = crop_flip(x, np.array([0]), np.array([4]), np.array([False]), padding=2)
    assert out.dtype == np.float32
    want = np.zeros((4, 4), np.float32)
    want[2:, :2] = 1.0                                  # shifted down by 2 and left by 2
    np.testing.assert_array_equal(host(out)[0, 0], want)


@given(n=st.integers(1, 4), h=st.integers(1, 6), w=st.integers(1, 6), p=st.integers(0, 3), seed=st.integers(0, 10**6))
def test_crop_flip_property(n, h, w, p, seed):
    x = images(n, c=2, h=h, w=w, seed=seed)
    r = np.random.default_rng(seed)
    oy, ox = r.integers(0, 2 * p + 1, size=(2, n))
    flips = r.random(n) < 0.5
    np.testing.assert_array_equal(crop_flip(x, oy, ox, flips, p), naive_crop_flip(x, oy, ox, flips, p))


def test_crop_flip_rejects_bad_offsets():
    with pytest.raises(ValueError, match=r"offsets must lie in \[0, 2\]"):
        crop_flip(images(2), np.array([0, 3]), np.array([0, 0]), np.array([False, False]), padding=1)
    with pytest.raises(ValueError, match="padding must be an integer >= 0"):
        random_crop_flip(images(2), np.random.default_rng(0), padding=-1)


# --- batching --------------------------------------------------------------------------------

def collect(it):
    return [(host(x), host(y), idx) for x, y, idx in it]


@pytest.mark.parametrize("n,bs", [(10, 3), (9, 3), (1, 4)])
def test_every_sample_once_per_epoch_without_drop_last(xp, n, bs):
    u, labels = images(n), np.arange(n) * 7 % 100
    batches = collect(iterate_batches(u, labels, bs, shuffle=True, rng=np.random.default_rng(0), drop_last=False))
    idx = np.concatenate([b[2] for b in batches])
    assert sorted(idx.tolist()) == list(range(n)) and len(batches) == num_batches(n, bs, False)
    assert [len(b[2]) for b in batches][:-1] == [bs] * (len(batches) - 1)
    for x, y, i in batches:
        assert x.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_array_equal(y, labels[i])
        np.testing.assert_allclose(x, host(normalize(u[i])), rtol=0, atol=0)


def test_drop_last_drops_only_the_last_partial_batch(xp):
    n, bs = 10, 3
    u, labels = images(n), np.arange(n)
    plain = collect(iterate_batches(u, labels, bs, drop_last=True))
    assert [b[2].tolist() for b in plain] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    shuffled = BatchIterator(u, labels, bs, shuffle=True, rng=np.random.default_rng(1), drop_last=True)
    assert len(shuffled) == 3
    got = collect(shuffled)
    idx = np.concatenate([b[2] for b in got])
    assert [len(b[2]) for b in got] == [3, 3, 3] and len(set(idx.tolist())) == 9
    exact = collect(iterate_batches(u[:9], labels[:9], bs, drop_last=True))
    assert len(exact) == 3, "nothing is dropped when the batches are full"


def test_same_seed_same_batches_and_epochs_differ(xp):
    u, labels = images(20, h=8, w=8), np.arange(20)

    def run(seed):
        it = BatchIterator(u, labels, 6, shuffle=True, rng=np.random.default_rng(seed), drop_last=True, augment=True)
        return collect(it), collect(it)                 # two epochs from one iterator

    (a1, a2), (b1, _) = run(5), run(5)
    for (xa, ya, ia), (xb, yb, ib) in zip(a1, b1):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ia, ib)
    assert not all(np.array_equal(p[2], q[2]) for p, q in zip(a1, a2)), "each epoch reshuffles"


def test_rng_state_restore_resumes_exactly(xp):
    u, labels = images(16, h=8, w=8), np.arange(16)
    rng = np.random.default_rng(9)
    it = BatchIterator(u, labels, 4, shuffle=True, rng=rng, drop_last=True, augment=True)
    collect(it)
    state = rng.bit_generator.state
    want = collect(it)
    rng.bit_generator.state = state
    got = collect(it)
    for (xa, _, ia), (xb, _, ib) in zip(want, got):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ia, ib)


def test_augmented_batch_matches_reference(xp):
    u, labels = images(8, h=8, w=8), np.arange(8)
    (x, _, idx), = collect(iterate_batches(u, labels, 8, shuffle=True, rng=np.random.default_rng(3), augment=True))
    r = np.random.default_rng(3)
    perm = r.permutation(8)
    oy, ox = r.integers(0, 9, size=8), r.integers(0, 9, size=8)
    flips = r.random(8) < 0.5
    np.testing.assert_array_equal(idx, perm)
    np.testing.assert_allclose(x, host(normalize(naive_crop_flip(u[perm], oy, ox, flips, 4))), rtol=0, atol=0)


def test_device_resident_images_work(xp):
    u, labels = images(6), np.arange(6)
    got = collect(iterate_batches(xp.asarray(u), xp.asarray(labels), 4))
    np.testing.assert_array_equal(got[1][1], [4, 5])
    np.testing.assert_allclose(got[0][0], host(normalize(u[:4])))


def test_bad_batching_arguments_are_clear():
    u, labels = images(5), np.arange(5)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        BatchIterator(u, labels, 0)
    with pytest.raises(ValueError, match="leaves no batch at all"):
        BatchIterator(u, labels, 8, drop_last=True)
    with pytest.raises(ValueError, match="need an rng"):
        BatchIterator(u, labels, 2, shuffle=True)
    with pytest.raises(ValueError, match=r"labels of shape \(5,\)"):
        BatchIterator(u, labels[:4], 2)


def test_last_batch_policy_is_stated():
    assert "dropped" in LAST_BATCH_POLICY and "BA²M" in LAST_BATCH_POLICY and "evaluation" in LAST_BATCH_POLICY
