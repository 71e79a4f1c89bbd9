"""Forward/backward op pairs (CS231n style): ``op_forward(...) -> (out, cache)`` and
``op_backward(dout, cache) -> grads``. Each file derives its backward in its docstring."""
