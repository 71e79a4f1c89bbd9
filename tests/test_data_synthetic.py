"""The offline synthetic data set: format, determinism, and learnability (numpy logistic regression)."""
from __future__ import annotations

import numpy as np
import pytest

from tinyba2m.data import load_dataset, make_synthetic


def test_format_matches_cifar():
    d = make_synthetic(250, 120, seed=0)
    assert d.train_images.shape == (250, 3, 32, 32) and d.test_images.shape == (120, 3, 32, 32)
    assert d.train_images.dtype == np.uint8 and d.train_labels.dtype == np.int64
    assert d.train_labels.min() >= 0 and d.train_labels.max() < 100
    assert len(d.fine_names) == 100 and d.fine_names[0] == "class_00" and d.fine_names[99] == "class_99"
    assert len(d.coarse_names) == 20 and (d.train_coarse == d.train_labels % 20).all()
    assert d.name == "synthetic" and d.num_classes == 100
    counts = np.bincount(d.train_labels[:200], minlength=100)
    assert (counts == 2).all(), "each block of 100 images holds every class once"
    assert d.train_images.std() > 20, "images must not be flat"


def test_deterministic_for_a_seed_and_different_across_seeds():
    a, b, c = make_synthetic(64, 32, seed=5), make_synthetic(64, 32, seed=5), make_synthetic(64, 32, seed=6)
    for f in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.train_images, c.train_images)
    assert not np.array_equal(a.train_images[:32], a.test_images), "train and test are different images"


def test_prefix_stable_so_subset_equals_smaller_set(monkeypatch):
    from tinyba2m.data import synthetic
    monkeypatch.setattr(synthetic, "CHUNK", 50)  # cross chunk boundaries with small sizes
    big, small = make_synthetic(230, 130, seed=2), make_synthetic(120, 70, seed=2)
    np.testing.assert_array_equal(big.train_images[:120], small.train_images)
    np.testing.assert_array_equal(big.test_labels[:70], small.test_labels)
    sub = load_dataset("synthetic", subset=40, seed=2)
    np.testing.assert_array_equal(sub.train_images, big.train_images[:40])


def test_other_sizes_and_classes():
    d = make_synthetic(30, 10, seed=1, num_classes=10, image_size=16)
    assert d.train_images.shape == (30, 3, 16, 16) and d.train_labels.max() < 10
    assert len(d.fine_names) == 10 and len(d.coarse_names) == 10
    assert make_synthetic(0, 0).train_images.shape == (0, 3, 32, 32)


@pytest.mark.parametrize("kw", [dict(n_train=-1), dict(n_train=2.5), dict(seed=-3), dict(num_classes=1),
                                dict(image_size=4)])
def test_bad_arguments_are_clear(kw):
    args = dict(n_train=10, n_test=10, **{k: v for k, v in kw.items() if k != "n_train"})
    if "n_train" in kw:
        args["n_train"] = kw["n_train"]
    with pytest.raises(ValueError, match=f"make_synthetic: {next(iter(kw))}"):
        make_synthetic(**args)


def _pooled(x):
    """8x8 average-pooled, standardised features of uint8 (N, 3, 32, 32) images: (N, 192)."""
    n = x.shape[0]
    return (x.astype(np.float32) / 255).reshape(n, 3, 8, 4, 8, 4).mean(axis=(3, 5)).reshape(n, -1)


def test_learnable_a_linear_model_is_far_above_chance():
    d = make_synthetic(1000, 500, seed=0)
    xtr, xte = _pooled(d.train_images), _pooled(d.test_images)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    onehot = np.eye(100, dtype=np.float32)[d.train_labels]
    w, b = np.zeros((xtr.shape[1], 100), np.float32), np.zeros(100, np.float32)
    for _ in range(150):                                             # full-batch softmax regression
        z = xtr @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(xtr)
        w -= 0.5 * (xtr.T @ g + 1e-3 * w)
        b -= 0.5 * g.sum(0)
    acc = ((xte @ w + b).argmax(1) == d.test_labels).mean()
    # measured 0.56; knowing only the coarse group (5 classes each) would give at most 0.2
    assert acc > 0.3, f"held-out accuracy {acc:.3f} should be far above chance (0.01)"


def test_not_trivial_within_class_variation():
    """Same-class images differ (shift, flip, distractor, noise), so augmentation matters."""
    d = make_synthetic(300, 0, seed=0)
    same = d.train_images[d.train_labels == 7].astype(np.float32)
    assert same.shape[0] == 3
    assert np.abs(same[0] - same[1]).mean() > 10
