"""Reference solutions of the exercises (try first; the tests check these pass the gradient checker)."""
