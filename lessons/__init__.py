"""The tinyba2m course (read the Markdown lessons in order; see README.md).

Being a package lets the gradient checker import the exercises from the repository root:
``python -m tinyba2m.gradcheck --target lessons.exercises.ex03_leaky_relu:leaky_relu_forward --shapes 4,5``.
"""
