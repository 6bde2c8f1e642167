"""Recurrent layers (mlx.estimators._recurrent): gradients through time against central
differences in float64, for the parameters and the inputs."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose

from mlx.estimators import _nn, _recurrent

# --- the cells ----------------------------------------------------------------------------


def _stack(cell, sizes, rng):
    """Recurrent layers of ``sizes = (D, H_1[, H_2])`` with their parameters and gradients as
    dicts of float64 arrays, the parameters moved away from their initial values (biases 0,
    orthogonal U) so that no term vanishes."""
    stack = []
    for k, (d, h) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layer = _recurrent.RECURRENT_LAYERS[cell](d, h)
        shapes = layer.parameter_shapes()
        p = {name: np.zeros(shape) for name, shape in shapes.items()}
        g = {name: np.zeros(shape) for name, shape in shapes.items()}
        layer.initialise(p, np.random.RandomState(k))
        for a in p.values():
            a += rng.normal(scale=0.3, size=a.shape)
        stack.append((layer, p, g))
    return stack


def _objective(stack, X, R, Q):
    """J = <R, h_T> + <Q, H>: the last hidden state of the top layer (what a many-to-one head
    reads) and every hidden state (what a layer stacked on top sends back)."""
    H = X
    for layer, p, _ in stack:
        H = layer.forward(H, p)
    return float(np.vdot(R, H[-1]) + np.vdot(Q, H))


def _backward(stack, R, Q):
    dH, dh_last = Q, R
    for layer, p, g in reversed(stack):
        dH = layer.backward(p, g, dh_last, dH, input_grad=True).copy()
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
    stack = _stack(cell, sizes, rng)
    n = 5
    X = rng.normal(size=(T, n, sizes[0]))
    R, Q = rng.normal(size=(n, sizes[-1])), rng.normal(size=(T, n, sizes[-1]))
    _objective(stack, X, R, Q)
    dX = _backward(stack, R, Q)
    analytic = np.concatenate([dX.ravel()] + [a.ravel() for *_, g in stack for a in g.values()])
    arrays = [X] + [a for _, p, _ in stack for a in p.values()]
    numeric = _central_differences(lambda: _objective(stack, X, R, Q), arrays)
    rel = _relative_error(analytic, numeric)
    assert rel < 1e-6, f"relative error {rel:.2e} for {cell=}, {sizes=}, {T=}"


@pytest.mark.parametrize("cell", sorted(_recurrent.RECURRENT_LAYERS))
def test_cells_follow_their_equations_frame_by_frame(cell):
    # One frame at a time with the textbook equations, against the layer's unrolled loop.
    rng = np.random.default_rng(1)
    ((layer, p, _),) = _stack(cell, (3, 4), rng)
    T, n, H = 6, 2, 4
    X = rng.normal(size=(T, n, 3))
    out = layer.forward(X, p).copy()
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
    layer = _recurrent.RECURRENT_LAYERS[cell](3, 5)

    def draw(seed, dtype):
        p = {k: np.zeros(s, dtype) for k, s in layer.parameter_shapes().items()}
        layer.initialise(p, np.random.RandomState(seed))
        return p

    a, b = draw(0, np.float64), draw(0, np.float32)
    for name in a:
        assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7)
    for k in range(layer.n_gates):
        block = a["U"][:, 5 * k : 5 * (k + 1)]
        assert_allclose(block.T @ block, np.eye(5), atol=1e-12)
    assert not np.allclose(draw(1, np.float64)["W"], a["W"])
    if cell == "lstm":  # the forget gate starts open
        assert_allclose(a["b"], np.repeat([0.0, 1.0, 0.0, 0.0], 5))


# --- the network (the protocol of _deep: flat buffers, a head on the last hidden state) -----


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", sorted(_recurrent.RECURRENT_LAYERS))
def test_network_gradient_matches_central_differences(cell, num_layers):
    rng = np.random.default_rng(2)
    n, C, T, k = 4, 3, 5, 3
    network = _recurrent.RecurrentNetwork(
        (C, T), k, cell=cell, hidden_size=4, num_layers=num_layers, dtype=np.float64
    ).initialise(np.random.RandomState(0))
    network.params += rng.normal(scale=0.2, size=network.params.shape)
    X = rng.normal(size=(n, C, T))
    Y = np.eye(k)[rng.integers(0, k, n)]

    def loss():
        return _nn.cross_entropy(network.forward(X, training=True).copy(), Y)

    dZ = network.forward(X, training=True)
    _nn.cross_entropy(dZ, Y)
    network.backward(dZ)
    numeric = _central_differences(loss, [network.params])
    rel = _relative_error(network.grads, numeric)
    assert rel < 1e-6, f"relative error {rel:.2e} for {cell=}, {num_layers=}"


def test_network_reads_channels_as_features_and_time_as_frames():
    # Moving a frame changes the output; permuting the channels inside every frame in the same
    # way as the rows of W does not.
    rng = np.random.default_rng(3)
    network = _recurrent.RecurrentNetwork(
        (3, 6), 2, cell="gru", hidden_size=5, num_layers=1, dtype=np.float64
    ).initialise(np.random.RandomState(0))
    X = rng.normal(size=(4, 3, 6))
    Z = network.forward(X).copy()
    assert not np.allclose(network.forward(X[:, :, ::-1]), Z)
    perm = [2, 0, 1]
    network.p["0.W"][...] = network.p["0.W"][perm]
    assert_allclose(network.forward(X[:, perm, :]), Z, rtol=1e-12)


def test_network_pickles_as_its_parameters():
    network = _recurrent.RecurrentNetwork(
        (2, 4), 3, cell="lstm", hidden_size=3, num_layers=2, dtype=np.float32
    ).initialise(np.random.RandomState(0))
    X = np.random.default_rng(4).normal(size=(5, 2, 4)).astype(np.float32)
    Z = network.forward(X).copy()
    again = pickle.loads(pickle.dumps(network))
    assert_allclose(again.forward(X), Z)
    assert again.params.dtype == np.float32
