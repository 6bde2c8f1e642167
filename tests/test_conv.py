"""The layers of the deep nets (mlx.estimators._conv, and Dense / Dropout of ._deep): forward
passes against direct sums over the windows, backward passes against central differences in
float64 (relative error < 1e-6), and, where PyTorch is installed (the benchmark environment),
both against PyTorch on the same weights."""

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose

from mlx.estimators import _conv
from mlx.estimators._deep import Dense, Dropout

H = 1e-6


def _central_differences(objective, x):
    """dJ/dx by central differences, perturbing x in place one entry at a time."""
    grad = np.empty_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + H
        up = objective()
        flat[i] = saved - H
        down = objective()
        flat[i] = saved
        out[i] = (up - down) / (2 * H)
    return grad


def _assert_gradient(analytic, objective, x, name):
    numeric = _central_differences(objective, x)
    rel = np.linalg.norm(analytic - numeric) / (np.linalg.norm(analytic) + np.linalg.norm(numeric))
    assert rel < 1e-6, f"relative error {rel:.2e} in {name}"


def _pairs(padding, d):
    """Normalise padding to one (before, after) pair per axis (as the layers do)."""
    if np.ndim(padding) == 0:
        return ((padding, padding),) * d
    return tuple((p, p) if np.ndim(p) == 0 else tuple(p) for p in padding)


def _windows(X, kernel, stride, padding, fill):
    """Yield (t, window) for every output position t, the window sliced from np.pad's output:
    a reference independent of _conv.Window."""
    d = len(kernel)
    stride = (stride,) * d if np.ndim(stride) == 0 else tuple(stride)
    pads = _pairs(padding, d)
    X_p = np.pad(X, ((0, 0), (0, 0), *pads), constant_values=fill)
    out = [(X_p.shape[2 + a] - kernel[a]) // stride[a] + 1 for a in range(d)]
    for t in itertools.product(*(range(o) for o in out)):
        index = tuple(slice(s * i, s * i + k) for s, i, k in zip(stride, t, kernel, strict=True))
        yield t, out, X_p[(slice(None), slice(None), *index)]


# --- the window arithmetic ----------------------------------------------------------------


def test_output_length_and_paddings():
    assert _conv.output_length(32, 5) == 28
    assert _conv.output_length(32, 5, 1, 2, 2) == 32
    assert _conv.output_length(10, 4, 2, 1, 2) == 5  # 13 padded entries: windows at 0, 2, .., 8
    assert _conv.output_length(3, 5) <= 0
    assert _conv.same_padding(5) == (2, 2)
    assert _conv.same_padding(4) == (1, 2)  # PyTorch's 'same': the extra entry after
    assert _conv.ceil_padding(5, 2) == (0, 1)
    assert _conv.ceil_padding(8, 2) == (0, 0)
    window = _conv.Window((5, 7), (2, 3), (2, 3), ((0, 1), (0, 2)))
    assert window.out == (3, 3) and window.padded == (6, 9)
    assert window.valid_counts().tolist() == [[6, 6, 2], [6, 6, 2], [3, 3, 1]]


def test_window_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match=r"size \(5,\) does not fit in an input of size \(3,\)"):
        _conv.Convolution((5,)).forward(np.zeros((1, 1, 3)), np.zeros((1, 1, 5)), np.zeros(1))


# --- convolution --------------------------------------------------------------------------

CONVOLUTIONS = [
    # (input spatial size, kernel, stride, padding)
    ((9,), (3,), 1, 0),
    ((9,), (5,), 1, 2),  # 'same'
    ((10,), (4,), 2, ((1, 2),)),
    ((7,), (7,), 1, 0),  # the kernel covers the whole sequence
    ((8,), (3,), 3, 1),
    ((5, 6), (3, 3), 1, 1),
    ((6, 5), (2, 3), (2, 1), ((0, 1), (1, 1))),
    ((7, 6), (3, 2), 2, 0),
]


def _conv_case(size, kernel, seed=0):
    rng = np.random.default_rng(seed)
    n, C, F = 2, 3, 4
    X = rng.normal(size=(n, C, *size))
    W = rng.normal(size=(F, C, *kernel))
    b = rng.normal(size=F)
    return X, W, b


@pytest.mark.parametrize("size, kernel, stride, padding", CONVOLUTIONS)
def test_convolution_forward_equals_the_direct_sum(size, kernel, stride, padding):
    X, W, b = _conv_case(size, kernel)
    Y = _conv.Convolution(kernel, stride, padding).forward(X, W, b)
    for t, out, window in _windows(X, kernel, stride, padding, 0.0):
        assert Y.shape == (2, 4, *out)
        expected = np.einsum("nck,fck->nf", window.reshape(2, 3, -1), W.reshape(4, 3, -1)) + b
        assert_allclose(Y[(slice(None), slice(None), *t)], expected, rtol=1e-12)


@pytest.mark.parametrize("size, kernel, stride, padding", CONVOLUTIONS)
def test_convolution_gradients_match_central_differences(size, kernel, stride, padding):
    X, W, b = _conv_case(size, kernel, seed=1)
    layer = _conv.Convolution(kernel, stride, padding)
    R = np.random.default_rng(2).normal(size=layer.forward(X, W, b).shape)  # J = <R, Y>
    dW, db = np.empty_like(W), np.empty_like(b)
    dX = layer.backward(R.copy(), W, dW, db).copy()

    def objective():
        return float(np.vdot(R, layer.forward(X, W, b)))

    for name, analytic, x in (("dX", dX, X), ("dW", dW, W), ("db", db, b)):
        _assert_gradient(analytic, objective, x, name)


def test_convolution_without_input_gradient_fills_the_parameter_gradients():
    X, W, b = _conv_case((9,), (3,))
    layer = _conv.Convolution((3,), 1, 1)
    dY = np.ones(layer.forward(X, W, b).shape)
    dW, db = np.empty_like(W), np.empty_like(b)
    assert layer.backward(dY, W, dW, db, input_grad=False) is None
    dW_full, db_full = np.empty_like(W), np.empty_like(b)
    layer.backward(dY, W, dW_full, db_full)
    assert_allclose(dW, dW_full)
    assert_allclose(db, db_full)


def test_a_smaller_batch_after_a_larger_one_reuses_the_buffers_correctly():
    # The last batch of an epoch is smaller: its buffers are prefixes of the first batch's.
    X, W, b = _conv_case((5, 6), (3, 3))
    X_big = np.concatenate([X, X[::-1], X])
    layer, fresh = _conv.Convolution((3, 3), 1, 1), _conv.Convolution((3, 3), 1, 1)
    pool, fresh_pool = _conv.Pooling((2, 2), padding=((0, 1), (0, 0))), _conv.Pooling((2, 2))
    layer.forward(X_big, W, b)
    pool.forward(X_big)
    Y = layer.forward(X, W, b)
    assert_allclose(Y, fresh.forward(X, W, b))
    dW, db, dW2, db2 = (np.empty_like(a) for a in (W, b, W, b))
    assert_allclose(layer.backward(Y.copy(), W, dW, db), fresh.backward(Y.copy(), W, dW2, db2))
    assert_allclose(dW, dW2)
    fresh_pool.padding = pool.padding
    assert_allclose(pool.forward(X), fresh_pool.forward(X))


# --- pooling ------------------------------------------------------------------------------

POOLINGS = [
    # (input spatial size, kernel, stride, padding)
    ((8,), (2,), None, 0),
    ((5,), (2,), None, ((0, 1),)),  # ceil padding: the last window holds one entry
    ((9,), (3,), 2, 1),  # overlapping windows
    ((6, 4), (2, 2), None, 0),
    ((5, 7), (2, 3), None, ((0, 1), (0, 2))),
    ((7, 6), (3, 3), 2, 1),
]


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("size, kernel, stride, padding", POOLINGS)
def test_pooling_forward_equals_the_direct_reduction(size, kernel, stride, padding, mode):
    X = np.random.default_rng(3).normal(size=(2, 3, *size))
    Y = _conv.Pooling(kernel, stride, padding, mode).forward(X)
    fill = -np.inf if mode == "max" else np.nan  # nan marks padding, left out of the mean
    for t, out, window in _windows(X, kernel, kernel if stride is None else stride, padding, fill):
        assert Y.shape == (2, 3, *out)
        flat = window.reshape(2, 3, -1)
        expected = flat.max(axis=2) if mode == "max" else np.nanmean(flat, axis=2)
        assert_allclose(Y[(slice(None), slice(None), *t)], expected, rtol=1e-12)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("size, kernel, stride, padding", POOLINGS)
def test_pooling_gradient_matches_central_differences(size, kernel, stride, padding, mode):
    X = np.random.default_rng(4).normal(size=(2, 3, *size))
    layer = _conv.Pooling(kernel, stride, padding, mode)
    R = np.random.default_rng(5).normal(size=layer.forward(X).shape)
    dX = layer.backward(R.copy()).copy()
    _assert_gradient(dX, lambda: float(np.vdot(R, layer.forward(X))), X, "dX")


def test_max_pooling_routes_a_tie_to_the_first_maximum():
    X = np.array([[[1.0, 1.0, 0.0, 2.0]]])
    layer = _conv.Pooling((2,))
    assert layer.forward(X).tolist() == [[[1.0, 2.0]]]
    assert layer.backward(np.array([[[5.0, 7.0]]])).tolist() == [[[5.0, 0.0, 0.0, 7.0]]]


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("size", [(7,), (4, 5)])
def test_global_pooling(size, mode):
    X = np.random.default_rng(6).normal(size=(3, 2, *size))
    layer = _conv.GlobalPooling(mode)
    Y = layer.forward(X)
    reduce = np.mean if mode == "avg" else np.max
    assert_allclose(Y, reduce(X.reshape(3, 2, -1), axis=2))
    R = np.random.default_rng(7).normal(size=Y.shape)
    dX = layer.backward(R).copy()
    assert dX.shape == X.shape
    _assert_gradient(dX, lambda: float(np.vdot(R, layer.forward(X))), X, "dX")


# --- dense and dropout --------------------------------------------------------------------


def test_dense_gradients_match_central_differences():
    rng = np.random.default_rng(8)
    A, W, b = rng.normal(size=(5, 4)), rng.normal(size=(4, 3)), rng.normal(size=3)
    layer = Dense()
    assert_allclose(layer.forward(A, W, b), A @ W + b)
    R = rng.normal(size=(5, 3))
    dW, db = np.empty_like(W), np.empty_like(b)
    dA = layer.backward(R, W, dW, db).copy()

    def objective():
        return float(np.vdot(R, layer.forward(A, W, b)))

    for name, analytic, x in (("dA", dA, A), ("dW", dW, W), ("db", db, b)):
        _assert_gradient(analytic, objective, x, name)


def test_dropout_gradient_with_a_fixed_mask_matches_central_differences():
    X = np.random.default_rng(9).normal(size=(6, 5))
    R = np.random.default_rng(10).normal(size=X.shape)
    layer = Dropout(0.4)

    def objective():  # the same mask at every evaluation: the same seed
        return float(np.vdot(R, layer.forward(X, True, np.random.default_rng(11))))

    objective()
    dX = layer.backward(R.copy()).copy()
    _assert_gradient(dX, objective, X, "dX")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_keeps_the_expectation_and_is_the_identity_at_inference(dtype):
    X = np.ones((400, 50), dtype=dtype)
    layer = Dropout(0.25)
    Y = layer.forward(X, True, np.random.default_rng(12))
    assert Y.dtype == dtype
    assert_allclose(np.unique(Y), [0.0, 1 / 0.75], rtol=1e-6)
    assert np.mean(Y == 0) == pytest.approx(0.25, abs=0.01)
    assert Y.mean() == pytest.approx(1.0, abs=0.02)
    assert layer.forward(X, False) is X
    assert Dropout(0.0).forward(X, True, np.random.default_rng(0)) is X


# --- against PyTorch (only where it is installed: the benchmark environment) --------------


@pytest.mark.parametrize(
    "size, kernel, stride, padding", [c for c in CONVOLUTIONS if np.ndim(c[3]) == 0]
)
def test_convolution_equals_pytorch(size, kernel, stride, padding):
    torch = pytest.importorskip("torch")
    X, W, b = _conv_case(size, kernel, seed=13)
    layer = _conv.Convolution(kernel, stride, padding)
    Y = layer.forward(X, W, b)
    R = np.random.default_rng(14).normal(size=Y.shape)
    dW, db = np.empty_like(W), np.empty_like(b)
    dX = layer.backward(R.copy(), W, dW, db)
    tX, tW, tb = (torch.tensor(a, requires_grad=True) for a in (X, W, b))
    conv = torch.nn.functional.conv1d if len(kernel) == 1 else torch.nn.functional.conv2d
    tY = conv(tX, tW, tb, stride=stride, padding=padding)
    (tY * torch.tensor(R)).sum().backward()
    assert_allclose(Y, tY.detach().numpy(), rtol=1e-10, atol=1e-12)
    for mine, theirs in ((dX, tX), (dW, tW), (db, tb)):
        assert_allclose(mine, theirs.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(
    "size, kernel, stride, padding", [p for p in POOLINGS if np.ndim(p[3]) == 0]
)
def test_pooling_equals_pytorch(size, kernel, stride, padding, mode):
    torch = pytest.importorskip("torch")
    X = np.random.default_rng(15).normal(size=(2, 3, *size))
    layer = _conv.Pooling(kernel, stride, padding, mode)
    Y = layer.forward(X)
    R = np.random.default_rng(16).normal(size=Y.shape)
    dX = layer.backward(R.copy())
    tX = torch.tensor(X, requires_grad=True)
    F = torch.nn.functional
    d = len(kernel)
    if mode == "max":
        pool = F.max_pool1d if d == 1 else F.max_pool2d
        tY = pool(tX, kernel, stride, padding)
    else:
        pool = F.avg_pool1d if d == 1 else F.avg_pool2d
        tY = pool(tX, kernel, stride, padding, count_include_pad=False)
    (tY * torch.tensor(R)).sum().backward()
    assert_allclose(Y, tY.detach().numpy(), rtol=1e-12)
    assert_allclose(dX, tX.grad.numpy(), rtol=1e-12, atol=1e-15)
