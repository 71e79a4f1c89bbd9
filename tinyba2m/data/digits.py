"""scikit-learn's hand-written digits as a small real data set (``--dataset digits``), offline.

``sklearn.datasets.load_digits``: 1,797 grey images of 8x8 pixels with values 0..16, 10 classes
(the optional extra ``pip install -e ".[digits]"``). Made to fit the models of this project:

- values scaled to uint8 0..255 and the grey channel repeated three times: (N, 3, 8, 8). The
  models take any H, W divisible by 4, so the images keep their native 8x8 (the last ResNet
  stage runs at 2x2, the global branch then has a single key position);
- a fixed split: a permutation drawn with ``numpy.random.default_rng(0)``, the first 360 images
  (20 %) are the test split, the other 1,437 the training split;
- ``augment=False``: no crop or flip in training (a mirrored 2, 3 or 7 is not the same digit,
  and a 4-pixel crop shift is half the image).
"""
from __future__ import annotations

from .. import backend
from .cifar100 import CifarData, DatasetError

np = backend.numpy_module  # a host data set

TEST_SIZE = 360
SPLIT_SEED = 0
NAMES = [str(d) for d in range(10)]


def load_digits_dataset() -> CifarData:
    """The digits as a :class:`CifarData` (see the module docstring); needs scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetError('--dataset digits needs scikit-learn: pip install -e ".[digits]" '
                           "(or pip install scikit-learn)") from None
    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)           # (1797, 8, 8)
    images = np.repeat(images[:, None], 3, axis=1)                              # (1797, 3, 8, 8)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(labels.shape[0])
    test, train = order[:TEST_SIZE], order[TEST_SIZE:]
    return CifarData(train_images=images[train], train_labels=labels[train], test_images=images[test],
                     test_labels=labels[test], train_coarse=np.zeros(len(train), np.int64),
                     test_coarse=np.zeros(len(test), np.int64), fine_names=list(NAMES),
                     coarse_names=["digit"], name="digits", augment=False)
