"""How ``python -m tinyba2m.grade`` checks each exercise of the course (lessons/README.md, "For instructors").

``EXERCISES`` holds one :class:`Exercise` per stub in ``exercises/``, with the check its lesson
gives the student:

- ``gradcheck``: the arguments of the lesson's ``python -m tinyba2m.gradcheck`` command, exactly
  as the lesson prints them (``tests/test_grade.py`` compares the two). The grader runs them with
  ``lessons.exercises.`` dropped, so that the target is the student's own file;
- ``own_check(module)``: a check of the student's imported module that yields ``(ok, text)``
  rows and raises what the student's code raises: the receptive field of exercise 8 (a
  measurement, not a backward pass) and the large-input probe of exercise 2.

An exercise passes when every part passes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .check import RECEPTIVE_FIELD_CASES, receptive_field_row, value_rows


@dataclass(frozen=True)
class Exercise:
    name: str                          # the file's stem: ex03_leaky_relu (the student hands in ex03_leaky_relu.py)
    gradcheck: str = ""                # "--target lessons.exercises.<name>:<Name> --shapes ..." as in the lesson
    own_check: Callable | None = None  # own_check(module) -> iterable of (ok, text); raises what the code raises

    @property
    def file(self) -> str:
        return f"{self.name}.py"


# Lesson 2's probe of softplus at large |x|: forward 0 and 1000, backward 0 and 1, all finite.
SOFTPLUS_PROBE = dict(x=[-1000.0, -1.0, 0.0, 1.0, 1000.0],
                      out=[0.0, np.log1p(np.exp(-1.0)), np.log(2.0), 1.0 + np.log1p(np.exp(-1.0)), 1000.0],
                      dx=[0.0, 1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-1.0)), 1.0])


def softplus_probe(module):
    return value_rows(module.softplus_forward, module.softplus_backward, label="softplus_forward", **SOFTPLUS_PROBE)


def receptive_field_rows(module):
    for dilations, size in RECEPTIVE_FIELD_CASES:
        yield receptive_field_row(module.receptive_field, dilations, size)


EXERCISES = {ex.name: ex for ex in (
    Exercise("ex01_row_scale", "--target lessons.exercises.ex01_row_scale:row_scale_forward --shapes 4,3 4"),
    Exercise("ex02_softplus", "--target lessons.exercises.ex02_softplus:softplus_forward --shapes 3,4", softplus_probe),
    Exercise("ex03_leaky_relu", "--target lessons.exercises.ex03_leaky_relu:leaky_relu_forward --shapes 4,5"),
    Exercise("ex04_conv1d", "--target lessons.exercises.ex04_conv1d:conv1d_forward --shapes 2,3,7 4,3,3"),
    Exercise("ex05_global_max_pool", "--target lessons.exercises.ex05_global_max_pool:global_max_pool_forward --shapes 2,3,4,4"),
    Exercise("ex06_layer_norm", "--target lessons.exercises.ex06_layer_norm:layer_norm_forward --shapes 4,5 5 5"),
    Exercise("ex07_channel_gate", "--target lessons.exercises.ex07_channel_gate:ChannelGate --input-shape 3,4,5,5"),
    Exercise("ex08_receptive_field", own_check=receptive_field_rows),
    Exercise("ex09_attention", "--target lessons.exercises.ex09_attention:attention_forward --shapes 2,5,3 2,4,3 2,4,2"),
    Exercise("ex10_max_mean", "--target lessons.exercises.ex10_max_mean:sigmoid_max_mean_forward --shapes 2,3 2,4,4"),
    Exercise("ex11_sigmoid_batch_weighting",
             "--target lessons.exercises.ex11_sigmoid_batch_weighting:sigmoid_batch_weighting_forward --shapes 4,3 4"),
    Exercise("ex12_residual_linear", "--target lessons.exercises.ex12_residual_linear:ResidualLinear --input-shape 3,4"),
    Exercise("ex13_repeat_columns", "--target lessons.exercises.ex13_repeat_columns:repeat_columns_forward --shapes 3,4"),
)}
