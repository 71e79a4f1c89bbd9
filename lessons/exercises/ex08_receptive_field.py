"""Exercise 8 (lesson 8): measure a receptive field with the backward pass.

A stack of single-channel 3x3 convolutions, layer l with dilation dilations[l] and padding
dilations[l] (so every map stays size x size), stride 1. Which input pixels can change the output
pixel (size // 2, size // 2)? Run the forward on a random input, put dout = 1 at that output pixel
(0 elsewhere), run the backward, and return the set of (row, col) where dx != 0.

Check from the repository root:
    python -c "from lessons.check import check_receptive_field as c; c('lessons.exercises.ex08_receptive_field:receptive_field')"
"""
from tinyba2m import backend  # noqa: F401  (backend.new_host_rng(seed) gives random numbers)
from tinyba2m.ops.conv import conv2d_backward, conv2d_forward  # noqa: F401


def receptive_field(dilations, size):
    """Return the set of input pixels (row, col) of a (size, size) map that reach the centre output pixel."""
    raise NotImplementedError("Exercise 8: write receptive_field in lessons/exercises/ex08_receptive_field.py")
