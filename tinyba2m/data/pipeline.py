"""Input pipeline on the active backend: normalisation, crop/flip augmentation, shuffled batches.

normalize:        x = (u / 255 - mean_c) / std_c          u uint8 (N, C, H, W) -> float32 (N, C, H, W)
random_crop_flip: out[n, c, i, j] = pad(x)[n, c, oy_n + i, ox_n + j']   with j' = W-1-j if flip_n else j,
                  pad(x) = x zero-padded by p on each side, oy_n, ox_n ~ U{0..2p}, flip_n ~ Bernoulli(1/2)
iterate_batches:  (x float32 device, y int64 device, idx host indices) per batch.

All randomness comes from the numpy ``Generator`` passed in (drawn on the host, then moved to the
device), so a trainer that saves and restores that generator's state resumes exactly.
Crop and flip run on the uint8 images (zero padding = black pixels, as in the usual
torchvision recipe) before normalisation; the uint8 batch travels to the device and is converted
there.
"""
from __future__ import annotations

from .. import backend
from ..ops.validation import require_positive_int

np = backend.numpy_module  # host-side index bookkeeping only

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
LAST_BATCH_POLICY = ("the last partial training batch is dropped each epoch (the data are reshuffled, so "
                     "different images are left out each time), because BA²M's batch-softmax weights depend "
                     "on the batch size and a tiny last batch would get extreme weights; evaluation uses "
                     "every image")


def normalize(images, mean=CIFAR100_MEAN, std=CIFAR100_STD, dtype=None):
    """(u / 255 - mean) / std per channel, on the active backend.

    images: uint8 (N, C, H, W) in 0..255 (host or device), or a float array already in [0, 1].
    mean, std: C values each. Returns ``dtype`` (default float32) (N, C, H, W) on the device.
    """
    if getattr(images, "ndim", None) != 4:
        raise ValueError(f"normalize: expected images of shape (N, C, H, W), got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    if len(mean) != images.shape[1] or len(std) != images.shape[1]:
        raise ValueError(f"normalize: images have {images.shape[1]} channels but mean/std have "
                         f"{len(mean)}/{len(std)} values")
    if min(std) <= 0:
        raise ValueError(f"normalize: std must be positive, got {tuple(std)}")
    xp = backend.get_xp()
    dtype = np.dtype(backend.float32 if dtype is None else dtype).type
    x = backend.to_device(images)
    kind = backend.dtype_of(x).kind
    if kind not in ("u", "i", "f"):
        raise ValueError(f"normalize: expected uint8 or float images, got dtype {backend.dtype_of(x)}")
    x = x.astype(dtype)
    if kind != "f":  # integers in 0..255
        x = x * dtype(1.0 / 255.0)
    m = xp.asarray(mean, dtype=dtype).reshape(1, -1, 1, 1)
    s = xp.asarray(std, dtype=dtype).reshape(1, -1, 1, 1)
    return (x - m) / s


def draw_crop_flip(rng, n: int, padding: int = 4, flip: bool = True):
    """Host draws for ``n`` images: (oy (n,), ox (n,), flips (n,) bool). Order: oy, ox, flips."""
    oy = rng.integers(0, 2 * padding + 1, size=n)
    ox = rng.integers(0, 2 * padding + 1, size=n)
    flips = rng.random(n) < 0.5 if flip else np.zeros(n, dtype=bool)
    return oy, ox, flips


def crop_flip(x, oy, ox, flips, padding: int = 4):
    """Crop each image of ``x`` (N, C, H, W) at offsets (oy_n, ox_n) of its zero-padded copy and
    mirror the ones with ``flips_n``; one gather for the whole batch. Same shape and dtype as x."""
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"crop_flip: expected x of shape (N, C, H, W), got {getattr(x, 'shape', type(x).__name__)}")
    n, c, h, w = x.shape
    padding = require_positive_int("crop_flip", "padding", padding, 0)
    oy, ox, flips = (np.asarray(backend.to_host(a)) for a in (oy, ox, flips))
    flips = flips.astype(bool)
    if not (oy.shape == ox.shape == flips.shape == (n,)):
        raise ValueError(f"crop_flip: expected oy, ox, flips of shape ({n},), got {oy.shape}, {ox.shape}, {flips.shape}")
    if n and (min(oy.min(), ox.min()) < 0 or max(oy.max(), ox.max()) > 2 * padding):
        raise ValueError(f"crop_flip: offsets must lie in [0, {2 * padding}] for padding {padding}")
    xp = backend.array_module(x)
    padded = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x
    rows = oy[:, None] + np.arange(h)[None, :]                       # (N, H) rows of the padded image
    cols = ox[:, None] + np.arange(w)[None, :]                       # (N, W)
    cols = np.where(flips[:, None], cols[:, ::-1], cols)             # flipping the crop = reading it backwards
    rows, cols = xp.asarray(rows), xp.asarray(cols)
    return padded[xp.arange(n)[:, None, None, None], xp.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def random_crop_flip(x, rng, padding: int = 4, flip: bool = True):
    """Random crop from the image zero-padded by ``padding`` and random horizontal flip (p = 1/2),
    vectorised over the batch. x (N, C, H, W) any dtype, host or device; rng a numpy Generator.
    Returns the same shape and dtype, on x's array module."""
    padding = require_positive_int("random_crop_flip", "padding", padding, 0)
    oy, ox, flips = draw_crop_flip(rng, x.shape[0], padding, flip)
    return crop_flip(x, oy, ox, flips, padding)


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


class BatchIterator:
    """Batches of ``(x, y, idx)`` over (images, labels), one pass per ``iter()``.

    images: uint8 (N, 3, H, W), host (moved per batch) or device; labels: int (N,).
    x: float32 (B, 3, H, W) on the device, cropped/flipped when ``augment`` and normalised;
    y: int64 (B,) on the device; idx: int64 (B,) host indices of the batch's images.
    ``shuffle`` draws a fresh permutation from ``rng`` at the start of every pass; ``augment``
    draws crop offsets and flips per batch. ``drop_last``: see :data:`LAST_BATCH_POLICY`
    (training: True; evaluation: False, so every image is seen once).
    """

    def __init__(self, images, labels, batch_size: int, shuffle: bool = False, rng=None,
                 drop_last: bool = False, augment: bool = False, mean=CIFAR100_MEAN, std=CIFAR100_STD,
                 padding: int = 4):
        require_positive_int("BatchIterator", "batch_size", batch_size)
        if getattr(images, "ndim", None) != 4:
            raise ValueError(f"BatchIterator: expected images of shape (N, C, H, W), got "
                             f"{getattr(images, 'shape', type(images).__name__)}")
        if tuple(labels.shape) != (images.shape[0],):
            raise ValueError(f"BatchIterator: expected labels of shape ({images.shape[0]},), got {tuple(labels.shape)}")
        if (shuffle or augment) and rng is None:
            raise ValueError("BatchIterator: shuffle/augment need an rng (a numpy Generator, e.g. backend.host_rng())")
        n = images.shape[0]
        if drop_last and 0 < n < batch_size:
            raise ValueError(f"BatchIterator: {n} images and batch size {batch_size} with the last partial batch "
                             f"dropped leaves no batch at all; use a batch size <= {n}")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.rng = batch_size, shuffle, rng
        self.drop_last, self.augment, self.padding = drop_last, augment, padding
        self.mean, self.std = tuple(mean), tuple(std)

    def __len__(self) -> int:
        return num_batches(self.images.shape[0], self.batch_size, self.drop_last)

    def __iter__(self):
        n = self.images.shape[0]
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        img_index = backend.array_module(self.images).asarray      # the indices on the images' device
        lab_index = backend.array_module(self.labels).asarray
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size].astype(np.int64)
            u = backend.to_device(self.images[img_index(idx)])  # uint8 over the bus, converted on the device
            if self.augment:
                u = random_crop_flip(u, self.rng, self.padding)
            x = normalize(u, self.mean, self.std)
            y = backend.to_device(self.labels[lab_index(idx)]).astype(backend.get_xp().int64)
            yield x, y, idx


def iterate_batches(images, labels, batch_size: int, shuffle: bool = False, rng=None, drop_last: bool = False,
                    augment: bool = False, mean=CIFAR100_MEAN, std=CIFAR100_STD, padding: int = 4):
    """Generator of ``(x, y, idx)`` batches; see :class:`BatchIterator`."""
    return iter(BatchIterator(images, labels, batch_size, shuffle=shuffle, rng=rng, drop_last=drop_last,
                              augment=augment, mean=mean, std=std, padding=padding))
