"""An offline, learnable stand-in for CIFAR-100 (``--dataset synthetic``).

Prototypes: a smooth pattern is a background colour, a sinusoidal stripe (random orientation,
frequency 1-3 cycles, colour) and three soft colour blobs. Like CIFAR-100, the classes come in 20
groups (the coarse labels, k % 20): the prototype of class k is
P_k = 0.6 * G_(k % 20) + 0.4 * Q_k, a pattern shared by its group plus one of its own, so the
hard confusions are within a group. An image of class k is

    x = clip(a * shift_flip(P_k) (*) distractor + b + noise, 0, 1) * 255

``shift_flip`` moves the prototype by up to 4 pixels (edges repeated) and mirrors it half the
time (so crops and flips are meaningful augmentations); ``distractor`` blends in a soft blob of
random colour at a random place; a ~ U(0.8, 1.2), b ~ U(-0.1, 0.1) per channel, noise
N(0, 0.12) per pixel. Measured: logistic regression on 8x8-pooled pixels reaches ~45 % test
accuracy from 500 training images and ~70 % from 3000 (chance: 1 %).

Deterministic for a seed, and prefix-stable: the first k images of ``make_synthetic(n, ...)`` are
the same for every n >= k (so ``--subset`` equals generating fewer images). Labels come in blocks
that are permutations of all classes, so every prefix of a multiple of ``num_classes`` images is
exactly balanced.
"""
from __future__ import annotations

from .. import backend
from ..ops.validation import require_positive_int
from .cifar100 import CifarData

np = backend.numpy_module  # generated on the host, like the real data set

MAX_SHIFT = 4
NOISE_STD = 0.12
CHUNK = 2048
DISTRACTOR = 0.9
GAIN = 0.2
BIAS = 0.1
GROUP_WEIGHT = 0.6
NUM_COARSE = 20


def _smooth_patterns(rng, c: int, s: int):
    """``c`` smooth random patterns, float32 (c, 3, S, S) in [0, 1]."""
    yy, xx = np.meshgrid(np.arange(s, dtype=np.float32), np.arange(s, dtype=np.float32), indexing="ij")
    bg = rng.uniform(0.15, 0.85, size=(c, 3, 1, 1)).astype(np.float32)
    # stripes: amplitude * colour direction * sin(2 pi f (x cos t + y sin t) / s + phase)
    theta = rng.uniform(0, np.pi, size=(c, 1, 1))
    freq = rng.integers(1, 4, size=(c, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(c, 1, 1))
    wave = np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) / s + phase)
    stripe_col = rng.uniform(-0.2, 0.2, size=(c, 3, 1, 1))
    proto = bg + stripe_col * wave[:, None]
    for _ in range(3):  # three soft blobs, blended over the background (a loop over blobs, not samples)
        cy, cx = rng.uniform(0, s, size=(2, c, 1, 1))
        sigma = rng.uniform(0.1, 0.25, size=(c, 1, 1)) * s
        w = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))[:, None]  # (c, 1, s, s)
        col = rng.uniform(0.0, 1.0, size=(c, 3, 1, 1))
        proto = proto * (1 - w) + col * w
    return np.clip(proto, 0.0, 1.0).astype(np.float32)


STREAMS = ("shift", "flip", "distractor", "colour", "gain", "bias", "noise")


def _render(protos, labels, rngs):
    """uint8 (n, 3, S, S) images of the given labels: shifted, flipped, jittered, noisy prototypes.

    ``rngs`` holds one generator per random quantity (``STREAMS``); each draws n rows in order, so
    image i gets the i-th rows of every stream however the images are cut into chunks."""
    n, s = labels.shape[0], protos.shape[-1]
    shift = rngs["shift"].integers(-MAX_SHIFT, MAX_SHIFT + 1, size=(n, 2))
    flip = rngs["flip"].random(n) < 0.5
    rows = np.clip(np.arange(s)[None, :] + shift[:, :1], 0, s - 1)                  # (n, S)
    cols = np.clip(np.arange(s)[None, :] + shift[:, 1:], 0, s - 1)
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    img = protos[labels[:, None, None, None], np.arange(3)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]                     # (n, 3, S, S)
    # a distractor: a soft blob of random colour at a random place, the same law for every class
    yy, xx = np.arange(s, dtype=np.float32)[:, None], np.arange(s, dtype=np.float32)[None, :]
    blob = rngs["distractor"].uniform(0, 1, size=(n, 3))                            # centre y, x; size
    cy, cx = (blob[:, 0] * s)[:, None, None], (blob[:, 1] * s)[:, None, None]
    sigma = ((0.1 + 0.1 * blob[:, 2]) * s)[:, None, None]
    w = (DISTRACTOR * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2)))[:, None].astype(np.float32)
    colour = rngs["colour"].uniform(0, 1, size=(n, 3)).astype(np.float32)[:, :, None, None]
    img = img * (1 - w) + colour * w
    gain = rngs["gain"].uniform(1 - GAIN, 1 + GAIN, size=n).astype(np.float32)[:, None, None, None]
    bias = rngs["bias"].uniform(-BIAS, BIAS, size=(n, 3)).astype(np.float32)[:, :, None, None]
    noise = rngs["noise"].standard_normal(img.shape, dtype=np.float32) * NOISE_STD
    return np.clip(np.rint((img * gain + bias + noise) * 255.0), 0, 255).astype(np.uint8)


def _split(seed: int, split: int, n: int, protos, num_classes: int):
    blocks = -(-n // num_classes)  # labels: consecutive blocks, each a random permutation of the classes
    perms = np.random.default_rng([seed, split, 0]).random((blocks, num_classes)).argsort(axis=1)
    labels = perms.reshape(-1)[:n].astype(np.int64)
    rngs = {q: np.random.default_rng([seed, split, 1, k]) for k, q in enumerate(STREAMS)}
    images = np.empty((n, 3) + protos.shape[-2:], dtype=np.uint8)
    for start in range(0, n, CHUNK):  # chunks bound the float memory; the streams run on across them
        stop = min(n, start + CHUNK)
        images[start:stop] = _render(protos, labels[start:stop], rngs)
    return images, labels


def make_synthetic(n_train: int, n_test: int, seed: int = 0, num_classes: int = 100,
                   image_size: int = 32) -> CifarData:
    """A synthetic CIFAR-like :class:`CifarData`: uint8 (N, 3, S, S) images, int64 labels in
    [0, num_classes), names ``class_00`` ..., coarse label = label % 20 (names ``group_00`` ...)."""
    op = "make_synthetic"
    n_train, n_test = require_positive_int(op, "n_train", n_train, 0), require_positive_int(op, "n_test", n_test, 0)
    seed, num_classes = require_positive_int(op, "seed", seed, 0), require_positive_int(op, "num_classes", num_classes, 2)
    image_size = require_positive_int(op, "image_size", image_size, 2 * MAX_SHIFT + 2)
    n_coarse = min(NUM_COARSE, num_classes)
    rng = np.random.default_rng([seed, 0])  # prototypes: class k mixes its group's pattern and its own
    groups = _smooth_patterns(rng, n_coarse, image_size)
    protos = (GROUP_WEIGHT * groups[np.arange(num_classes) % n_coarse]
              + (1 - GROUP_WEIGHT) * _smooth_patterns(rng, num_classes, image_size))
    tr_x, tr_y = _split(seed, 1, n_train, protos, num_classes)
    te_x, te_y = _split(seed, 2, n_test, protos, num_classes)
    digits = max(2, len(str(num_classes - 1)))
    return CifarData(train_images=tr_x, train_labels=tr_y, test_images=te_x, test_labels=te_y,
                     train_coarse=tr_y % n_coarse, test_coarse=te_y % n_coarse,
                     fine_names=[f"class_{k:0{digits}d}" for k in range(num_classes)],
                     coarse_names=[f"group_{k:02d}" for k in range(n_coarse)], name="synthetic")
