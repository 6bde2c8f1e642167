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


def _ours(A):
    """PyTorch's layout (n, C, *L) -> the layers' (C, *L, n)."""
    return np.moveaxis(A, 0, -1)


def _torch(A):
    """The layers' layout (C, *L, n) -> PyTorch's (n, C, *L)."""
    return np.moveaxis(A, -1, 0)


def _pairs(padding, d):
    """Normalise padding to one (before, after) pair per axis (as the layers do)."""
    if np.ndim(padding) == 0:
        return ((padding, padding),) * d
    return tuple((p, p) if np.ndim(p) == 0 else tuple(p) for p in padding)


def _direct_convolution(X, W, stride, padding):
    """Z[n, f, t] = sum_{c, j} W[f, c, j] X_p[n, c, s t + j] in PyTorch's layout, window by
    window on np.pad's output: a reference independent of _conv.Window."""
    n, F, kernel = X.shape[0], W.shape[0], W.shape[2:]
    d = len(kernel)
    stride = (stride,) * d if np.ndim(stride) == 0 else tuple(stride)
    X_p = np.pad(X, ((0, 0), (0, 0), *_pairs(padding, d)))
    out = [(X_p.shape[2 + a] - kernel[a]) // stride[a] + 1 for a in range(d)]
    Z = np.empty((n, F, *out))
    for t in itertools.product(*(range(o) for o in out)):
        index = tuple(slice(s * i, s * i + k) for s, i, k in zip(stride, t, kernel, strict=True))
        window = X_p[(slice(None), slice(None), *index)].reshape(n, X.shape[1], -1)
        Z[(slice(None), slice(None), *t)] = np.einsum(
            "nck,fck->nf", window, W.reshape(F, X.shape[1], -1)
        )
    return Z


def _direct_pooling(Z, pool, mode):
    """Non-overlapping windows of ``pool`` over (n, F, *L), the last one partial (ceil mode)."""
    d = len(pool)
    out = [-(-Z.shape[2 + a] // pool[a]) for a in range(d)]
    Y = np.empty((*Z.shape[:2], *out))
    for t in itertools.product(*(range(o) for o in out)):
        index = tuple(slice(P * i, P * i + P) for P, i in zip(pool, t, strict=True))
        window = Z[(slice(None), slice(None), *index)].reshape(*Z.shape[:2], -1)
        Y[(slice(None), slice(None), *t)] = (
            window.max(axis=2) if mode == "max" else window.mean(axis=2)
        )
    return Y


# --- the window arithmetic ----------------------------------------------------------------


def test_output_length_padding_and_window_geometry():
    assert _conv.output_length(32, 5) == 28
    assert _conv.output_length(32, 5, 1, 2, 2) == 32
    assert _conv.output_length(10, 4, 2, 1, 2) == 5  # 13 padded entries: windows at 0, 2, .., 8
    assert _conv.output_length(3, 5) <= 0
    assert _conv.same_padding(5) == (2, 2)
    assert _conv.same_padding(4) == (1, 2)  # PyTorch's 'same': the extra zero after
    window = _conv.Window((5, 7), (2, 3), (1, 1), ((0, 0), (1, 1)), (2, 3))
    assert window.conv_out == (4, 7) and window.out == (2, 3)
    assert window.period == (2, 3) and window.split_shape == (2, 3, 3, 4)
    assert window.valid_counts()[..., 0].tolist() == [[6, 6, 2], [6, 6, 2]]
    assert window.phantoms((0, 0)) == []
    # t = 3 t' + 1 >= 7 from t' = 2 on, along the second spatial axis of (C, *L', n)
    assert window.phantoms((1, 1)) == [(slice(None), slice(None), slice(2, None), slice(None))]


@pytest.mark.parametrize(
    "size, kernel, stride, padding, pool",
    [
        ((9,), (3,), (2,), ((1, 2),), (2,)),
        ((5, 7), (2, 3), (1, 2), ((0, 1), (1, 1)), (2, 3)),
    ],
)
def test_phase_split_reads_the_padded_input_and_merges_back(size, kernel, stride, padding, pool):
    X = np.random.default_rng(0).normal(size=(2, 3, *size))
    window = _conv.Window(size, kernel, stride, padding, pool)
    X_s = window.split(_ours(X), np.empty((3, *window.split_shape, 2)))
    X_p = np.pad(
        X,
        (
            (0, 0),
            (0, 0),
            *padding,
        ),
    )
    for j in window.kernel_offsets:
        for o in window.pool_offsets:
            view = window.read(X_s, j, o)
            for t in itertools.product(*(range(L) for L in window.out)):
                u = [s * (P * ti + oi) + ji for s, P, ti, oi, ji in zip(stride, pool, t, o, j)]
                inside = all(ui < L for ui, L in zip(u, X_p.shape[2:]))
                expected = X_p[(slice(None), slice(None), *u)] if inside else 0.0  # room after
                assert_allclose(view[(slice(None), *t)].T, expected)
    assert_allclose(_torch(window.merge(X_s, np.empty_like(_ours(X)))), X)


def test_a_kernel_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match=r"size \(5,\) does not fit in an input of size \(3,\)"):
        _conv.Convolution((5,)).forward(np.zeros((1, 3, 1)), np.zeros((1, 1, 5)))


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
POOLS = [(2,), (3,), (1,), (2, 2), (2, 3), (3, 1)]
POOLED = [(*case, pool) for case in CONVOLUTIONS for pool in POOLS if len(pool) == len(case[1])]


def _case(size, kernel, seed=0):
    rng = np.random.default_rng(seed)
    n, C, F = 2, 3, 4
    return rng.normal(size=(n, C, *size)), rng.normal(size=(F, C, *kernel))


@pytest.mark.parametrize("size, kernel, stride, padding", CONVOLUTIONS)
def test_convolution_equals_the_direct_sum(size, kernel, stride, padding):
    X, W = _case(size, kernel)
    Z = _conv.Convolution(kernel, stride, padding).forward(_ours(X), W)
    assert Z.shape[1] == 1  # no pooling: one offset
    assert_allclose(_torch(Z[:, 0]), _direct_convolution(X, W, stride, padding), rtol=1e-12)


@pytest.mark.parametrize("size, kernel, stride, padding, pool", POOLED)
def test_pooled_convolution_orders_its_outputs_by_window_offset(
    size, kernel, stride, padding, pool
):
    X, W = _case(size, kernel)
    layer = _conv.Convolution(kernel, stride, padding, pool=pool)
    Z = layer.forward(_ours(X), W)
    plain = _direct_convolution(X, W, stride, padding)  # (n, F, *L_out)
    window = layer.win
    assert Z.shape == (4, np.prod(pool), *window.out, 2)
    for q, o in enumerate(window.pool_offsets):
        for t in itertools.product(*(range(L) for L in window.out)):
            u = tuple(P * ti + oi for P, ti, oi in zip(pool, t, o, strict=True))
            if all(ui < L for ui, L in zip(u, plain.shape[2:], strict=True)):  # not a phantom
                assert_allclose(
                    Z[(slice(None), q, *t)].T, plain[(slice(None), slice(None), *u)], rtol=1e-12
                )


@pytest.mark.parametrize("pool", [None, "pooled"])
@pytest.mark.parametrize("size, kernel, stride, padding", CONVOLUTIONS)
def test_convolution_gradients_match_central_differences(size, kernel, stride, padding, pool):
    X, W = _case(size, kernel, seed=1)
    X = np.ascontiguousarray(_ours(X))
    pool = None if pool is None else (2,) * len(kernel)
    layer = _conv.Convolution(kernel, stride, padding, pool=pool)
    R = np.random.default_rng(2).normal(size=layer.forward(X, W).shape)  # J = <R, Z>
    dW = np.empty_like(W)
    dX = layer.backward(R.copy(), W, dW).copy()

    def objective():
        return float(np.vdot(R, layer.forward(X, W)))

    _assert_gradient(dX, objective, X, "dX")
    _assert_gradient(dW, objective, W, "dW")


def test_convolution_without_input_gradient_fills_the_weight_gradient():
    X, W = _case((9,), (3,))
    layer = _conv.Convolution((3,), 1, 1)
    dZ = np.ones(layer.forward(_ours(X), W).shape)
    dW, dW_full = np.empty_like(W), np.empty_like(W)
    assert layer.backward(dZ, W, dW, input_grad=False) is None
    layer.backward(dZ, W, dW_full)
    assert_allclose(dW, dW_full)


def test_a_smaller_batch_after_a_larger_one_reuses_the_buffers_correctly():
    # The last batch of an epoch is smaller: its buffers are prefixes of the first batch's.
    X, W = _case((5, 6), (3, 3))
    X = np.ascontiguousarray(_ours(X))
    X_big = np.concatenate([X, X[..., ::-1], X], axis=-1)
    layer, fresh = (_conv.Convolution((3, 3), 1, 1, pool=(2, 2)) for _ in range(2))
    pool, fresh_pool = _conv.Pooling("max"), _conv.Pooling("max")
    pool.forward(layer.forward(X_big, W), layer.win)
    Y = pool.forward(layer.forward(X, W), layer.win)
    assert_allclose(Y, fresh_pool.forward(fresh.forward(X, W), fresh.win))
    dW, dW2 = np.empty_like(W), np.empty_like(W)
    dX = layer.backward(pool.backward(Y.copy()), W, dW)
    assert_allclose(dX, fresh.backward(fresh_pool.backward(Y.copy()), W, dW2))
    assert_allclose(dW, dW2)


# --- pooling ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(
    "size, pool", [((8,), (2,)), ((7,), (3,)), ((6, 4), (2, 2)), ((5, 7), (2, 3))]
)
def test_pooling_equals_the_direct_reduction(size, pool, mode):
    X, W = _case(size, (1,) * len(size), seed=3)
    layer = _conv.Convolution((1,) * len(size), pool=pool)
    Y = _conv.Pooling(mode).forward(layer.forward(_ours(X), W), layer.win)
    expected = _direct_pooling(_direct_convolution(X, W, 1, 0), pool, mode)
    assert_allclose(_torch(Y), expected, rtol=1e-12)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(
    "size, pool", [((8,), (2,)), ((7,), (3,)), ((6, 4), (2, 2)), ((5, 7), (2, 3))]
)
def test_pooling_gradient_matches_central_differences(size, pool, mode):
    window = _conv.Window(size, (1,) * len(size), (1,) * len(size), ((0, 0),) * len(size), pool)
    Z = np.random.default_rng(4).normal(size=(3, np.prod(pool), *window.out, 2))
    layer = _conv.Pooling(mode)
    R = np.random.default_rng(5).normal(size=layer.forward(Z.copy(), window).shape)
    dZ = layer.backward(R.copy()).copy()
    _assert_gradient(dZ, lambda: float(np.vdot(R, layer.forward(Z.copy(), window))), Z, "dZ")


def test_max_pooling_routes_a_tie_to_the_first_maximum():
    window = _conv.Window((4,), (1,), (1,), ((0, 0),), (2,))
    Z = np.array([1.0, 0.0, 1.0, 2.0]).reshape(1, 2, 2, 1)  # windows (1, 1) and (0, 2)
    layer = _conv.Pooling("max")
    assert layer.forward(Z.copy(), window).ravel().tolist() == [1.0, 2.0]
    dZ = layer.backward(np.array([5.0, 7.0]).reshape(1, 2, 1))
    assert dZ.ravel().tolist() == [5.0, 0.0, 0.0, 7.0]  # (q=0: 5, 0), (q=1: 0, 7)


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("size", [(7,), (4, 5)])
def test_global_pooling(size, mode):
    X = np.random.default_rng(6).normal(size=(2, *size, 3))  # (C, *L, n)
    layer = _conv.GlobalPooling(mode)
    Y = layer.forward(X)
    reduce = np.mean if mode == "avg" else np.max
    assert_allclose(Y, reduce(X.reshape(2, -1, 3), axis=1).T)
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
    X, W = _case(size, kernel, seed=13)
    layer = _conv.Convolution(kernel, stride, padding)
    Z = _torch(layer.forward(_ours(X), W)[:, 0])
    R = np.random.default_rng(14).normal(size=Z.shape)
    dW = np.empty_like(W)
    dX = _torch(layer.backward(_ours(R)[:, None].copy(), W, dW))
    tX, tW = (torch.tensor(a, requires_grad=True) for a in (X, W))
    conv = torch.nn.functional.conv1d if len(kernel) == 1 else torch.nn.functional.conv2d
    tZ = conv(tX, tW, stride=stride, padding=padding)
    (tZ * torch.tensor(R)).sum().backward()
    assert_allclose(Z, tZ.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert_allclose(dX, tX.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert_allclose(dW, tW.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(
    "size, pool", [((8,), (2,)), ((7,), (3,)), ((6, 4), (2, 2)), ((5, 7), (2, 3))]
)
def test_pooled_convolution_equals_pytorch(size, pool, mode):
    torch = pytest.importorskip("torch")
    X, W = _case(size, (3,) * len(size), seed=15)
    conv = _conv.Convolution((3,) * len(size), 1, 1, pool=pool)
    pooling = _conv.Pooling(mode)
    Y = pooling.forward(conv.forward(_ours(X), W), conv.win)
    R = np.random.default_rng(16).normal(size=Y.shape)
    dW = np.empty_like(W)
    dX = _torch(conv.backward(pooling.backward(R.copy()), W, dW))
    tX, tW = (torch.tensor(a, requires_grad=True) for a in (X, W))
    F = torch.nn.functional
    d = len(size)
    tZ = (F.conv1d if d == 1 else F.conv2d)(tX, tW, padding=1)
    if mode == "max":
        tY = (F.max_pool1d if d == 1 else F.max_pool2d)(tZ, pool, ceil_mode=True)
    else:
        tY = (F.avg_pool1d if d == 1 else F.avg_pool2d)(tZ, pool, ceil_mode=True)
    (tY * torch.tensor(_torch(R))).sum().backward()
    assert_allclose(_torch(Y), tY.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert_allclose(dX, tX.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert_allclose(dW, tW.grad.numpy(), rtol=1e-10, atol=1e-12)
