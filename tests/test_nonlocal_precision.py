"""The non-local attention backward in float32 against an accurate float64 truth, for score
scales 1 to 1e4 and rows that are sharp (every row's attention on one key: 1 - P_max ~ 1e-6),
mixed (per-row scale and sharpness) and flat (a large common score offset, small spread).

The truth never subtracts nearly equal numbers: with the exact P (float64, from the same
float32 inputs), ``dS[q, m] = P[q, m] * sum_v dout[q, v] * sum_m' P[q, m'] (g[v, m] - g[v, m'])``.
The textbook form ``P * (dP - rowsum(dP * P))`` loses ``eps / (1 - P_max)`` on sharp rows (2e-2 in
float32 here, 5e-11 in float64); the fast backward must not.
"""
import numpy as np
import pytest

from tinyba2m import backend
from tinyba2m.attention.nonlocal_attention import (nonlocal_attention_backward, nonlocal_attention_backward_reference,
                                                   nonlocal_attention_forward)

SCALES = (1.0, 10.0, 100.0, 1e3, 1e4)
KINDS = ("sharp", "mixed", "flat")


def float32_tolerance(scale):
    """What float32 can give at all: the float32 scores carry an error ~ eps32 * scale, which the
    softmax turns into a relative error of P of that size (1e-5 at small scales, 5e-3 at 1e4)."""
    return 1e-5 + 5e-7 * scale


def scores(kind, scale, rng, n, q, m):
    """(N, Q, M) target scores of the given kind."""
    if kind == "flat":
        return scale * rng.uniform(-1, 1, (n, q, 1)) + rng.standard_normal((n, q, m))
    s = scale if kind == "sharp" else np.exp(rng.uniform(0, np.log(scale), (n, q, 1))) if scale > 1 else 1.0
    x = s * rng.standard_normal((n, q, m))
    gap = np.full((n, q), 14.0) if kind == "sharp" else rng.uniform(0, 16, (n, q))
    top = rng.integers(0, m, (n, q))
    np.put_along_axis(x, top[..., None], (x.max(axis=2) + gap)[..., None], axis=2)
    return x


def make_inputs(kind, scale, v, seed=0, n=3, q=32, m=16):
    """float32 theta (N, K=M, Q), phi (N, K, M), g (N, V, M), dout (N, Q, V) whose scores
    theta^T phi are ``scores(kind, scale)``: phi = a U, theta = U^T S^T / a with U orthogonal."""
    rng = np.random.default_rng(seed)
    s = scores(kind, scale, rng, n, q, m)
    u, _ = np.linalg.qr(rng.standard_normal((n, m, m)))
    a = np.sqrt(max(scale, 1.0))
    phi = a * u.transpose(0, 2, 1)
    theta = np.einsum("nmk,nqm->nkq", u, s) / a
    g, dout = rng.standard_normal((n, v, m)), rng.standard_normal((n, q, v))
    return [x.astype(np.float32) for x in (theta, phi, g, dout)]


def truth(theta, phi, g, dout):
    """Gradients (dtheta, dphi, dg) in float64 without cancellation (see the module docstring)."""
    theta, phi, g, dout = (np.asarray(x, dtype=np.float64) for x in (theta, phi, g, dout))
    s = np.einsum("nkq,nkm->nqm", theta, phi)
    p = np.exp(s - s.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    diff = g[:, :, :, None] - g[:, :, None, :]                               # (N, V, M, M'): g[m] - g[m']
    centred = np.einsum("nqk,nvmk->nvqm", p, diff)                           # sum_m' P[q, m'] (g[m] - g[m'])
    ds = p * np.einsum("nqv,nvqm->nqm", dout, centred)
    return phi @ ds.transpose(0, 2, 1), theta @ ds, dout.transpose(0, 2, 1) @ p


def errors(backward, xp, dtype, theta, phi, g, dout):
    args = [xp.asarray(x.astype(dtype)) for x in (theta, phi, g)]
    _, cache = nonlocal_attention_forward(*args)
    got = backward(xp.asarray(dout.astype(dtype)), cache)
    want = truth(theta, phi, g, dout)
    return [float(np.linalg.norm(backend.to_host(a) - b) / np.linalg.norm(b)) for a, b in zip(got, want)]


@pytest.mark.parametrize("v", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scale", SCALES)
def test_float32_backward_matches_float64_truth(xp, kind, scale, v):
    inputs = make_inputs(kind, scale, v)
    fast = errors(nonlocal_attention_backward, xp, "float32", *inputs)
    tol = float32_tolerance(scale)
    assert max(fast) <= tol, f"{kind} rows at scale {scale:g}: float32 (dtheta, dphi, dg) errors {fast}, tolerance {tol:.1e}"
    if kind != "sharp":  # the tolerance is one a float32 textbook backward meets on such rows
        textbook = errors(nonlocal_attention_backward_reference, xp, "float32", *inputs)
        assert max(textbook) <= tol, f"textbook float32 errors {textbook} above {tol:.1e}"


@pytest.mark.parametrize("v", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scale", SCALES)
def test_float64_backward_within_1e_10(xp, kind, scale, v):
    fast = errors(nonlocal_attention_backward, xp, "float64", *make_inputs(kind, scale, v))
    assert max(fast) <= 1e-10, f"{kind} rows at scale {scale:g}: float64 (dtheta, dphi, dg) errors {fast}"


def test_sharp_rows_are_sharp_and_the_textbook_form_is_not_enough_there():
    """Guards the test data: on the 'sharp' rows 1 - P_max is ~1e-6, and the textbook float32
    backward is off by more than 1e-3 there (so the tolerance above is a real demand)."""
    theta, phi, g, dout = make_inputs("sharp", 1e3, 1)
    s = np.einsum("nkq,nkm->nqm", theta.astype(np.float64), phi.astype(np.float64))
    p = np.exp(s - s.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    assert 1e-7 < float(np.median(1 - p.max(axis=2))) < 1e-5
    textbook = errors(nonlocal_attention_backward_reference, backend.numpy_module, "float32", theta, phi, g, dout)
    assert max(textbook) > 1e-3
