"""Exercise stubs: fill in each function or class; until then it raises NotImplementedError.

Check your answer from the repository root with the command the lesson gives, e.g.
``python -m tinyba2m.gradcheck --target lessons.exercises.ex03_leaky_relu:leaky_relu_forward --shapes 4,5``.
"""
