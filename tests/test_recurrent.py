"""Recurrent layers (mlx.estimators._recurrent): gradients through time against central
differences in float64, for the parameters and the inputs."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from mlx.estimators import _recurrent

# --- the cells ----------------------------------------------------------------------------


def _stack(cell, sizes, rng):
    """Recurrent layers of ``sizes = (D, H_1[, H_2])`` with parameters in float64 arrays, moved
    away from their initial values (biases 0, orthogonal U) so that no term vanishes."""
    scratch = _recurrent.Scratch(np.float64)
    layers = []
    for k, (d, h) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layer = _recurrent.RECURRENT_LAYERS[cell](d, h, name=f"{k}.", scratch=scratch)
        shapes = layer.parameter_shapes()
        layer.bind(
            {name: np.zeros(shape) for name, shape in shapes.items()},
            {name: np.zeros(shape) for name, shape in shapes.items()},
        )
        layer.initialise(np.random.RandomState(k))
        for p in layer.params.values():
            p += rng.normal(scale=0.3, size=p.shape)
        layers.append(layer)
    return layers


def _objective(layers, X, R, Q):
    """J = <R, h_T> + <Q, H>: the last hidden state of the top layer (what a many-to-one head
    reads) and every hidden state (what a layer stacked on top sends back)."""
    H = X
    for layer in layers:
        H = layer.forward(H)
    return float(np.vdot(R, H[-1]) + np.vdot(Q, H))


def _backward(layers, R, Q):
    dH, dh_last = Q, R
    for layer in reversed(layers):
        dH = layer.backward(dh_last, dH, need_dX=True).copy()
        dh_last = None
    return dH


def _central_differences(f, arrays, h=1e-6):
    numeric = []
    for a in arrays:
        flat = a.reshape(-1)  # a view: the arrays are contiguous
        out = np.empty(flat.size)
        for i in range(flat.size):
            saved = flat[i]
            flat[i] = saved + h
            up = f()
            flat[i] = saved - h
            down = f()
            flat[i] = saved
            out[i] = (up - down) / (2 * h)
        numeric.append(out)
    return np.concatenate(numeric)


def _relative_error(a, b):
    return np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b))


@pytest.mark.parametrize("T", [1, 2, 7])
@pytest.mark.parametrize("sizes", [(3, 4), (3, 4, 5)], ids=["one layer", "two layers"])
@pytest.mark.parametrize("cell", sorted(_recurrent.RECURRENT_LAYERS))
def test_gradient_through_time_matches_central_differences(cell, sizes, T):
    rng = np.random.default_rng(0)
    layers = _stack(cell, sizes, rng)
    n = 5
    X = rng.normal(size=(T, n, sizes[0]))
    R, Q = rng.normal(size=(n, sizes[-1])), rng.normal(size=(T, n, sizes[-1]))
    _objective(layers, X, R, Q)
    dX = _backward(layers, R, Q)
    analytic = np.concatenate(
        [dX.ravel()] + [g.ravel() for layer in layers for g in layer.grads.values()]
    )
    arrays = [X] + [p for layer in layers for p in layer.params.values()]
    numeric = _central_differences(lambda: _objective(layers, X, R, Q), arrays)
    rel = _relative_error(analytic, numeric)
    assert rel < 1e-6, f"relative error {rel:.2e} for {cell=}, {sizes=}, {T=}"


@pytest.mark.parametrize("cell", sorted(_recurrent.RECURRENT_LAYERS))
def test_cells_follow_their_equations_frame_by_frame(cell):
    # One frame at a time with the textbook equations, against the layer's unrolled loop.
    rng = np.random.default_rng(1)
    (layer,) = _stack(cell, (3, 4), rng)
    T, n, H = 6, 2, 4
    X = rng.normal(size=(T, n, 3))
    out = layer.forward(X).copy()
    p = layer.params
    W, U, b = p["W"], p["U"], p["b"]
    sigma = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h, c = np.zeros((n, H)), np.zeros((n, H))
    for t in range(T):
        x = X[t]
        if cell == "gru":
            r = sigma(x @ W[:, :H] + h @ U[:, :H] + b[:H])
            z = sigma(x @ W[:, H : 2 * H] + h @ U[:, H : 2 * H] + b[H : 2 * H])
            h_tilde = np.tanh(x @ W[:, 2 * H :] + b[2 * H :] + r * (h @ U[:, 2 * H :] + p["b_u"]))
            h = (1 - z) * h_tilde + z * h
        else:
            pre = x @ W + h @ U + b
            i, f, o = sigma(pre[:, :H]), sigma(pre[:, H : 2 * H]), sigma(pre[:, 2 * H : 3 * H])
            g = np.tanh(pre[:, 3 * H :])
            c = f * c + i * g
            h = o * np.tanh(c)
        assert_allclose(out[t], h, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", sorted(_recurrent.RECURRENT_LAYERS))
def test_initialisation_is_seeded_and_recurrent_blocks_are_orthogonal(cell):
    def layer(seed, dtype):
        layer = _recurrent.RECURRENT_LAYERS[cell](3, 5)
        shapes = layer.parameter_shapes()
        layer.bind({k: np.zeros(s, dtype) for k, s in shapes.items()}, {})
        return layer.initialise(np.random.RandomState(seed))

    a, b = layer(0, np.float64), layer(0, np.float32)
    for name in a.params:
        assert_allclose(a.params[name], b.params[name], rtol=1e-6, atol=1e-7)
    U = a.params["U"]
    for k in range(a.n_gates):
        block = U[:, 5 * k : 5 * (k + 1)]
        assert_allclose(block.T @ block, np.eye(5), atol=1e-12)
    assert not np.allclose(layer(1, np.float64).params["W"], a.params["W"])
    if cell == "lstm":  # the forget gate starts open
        assert_allclose(a.params["b"], np.repeat([0.0, 1.0, 0.0, 0.0], 5))
