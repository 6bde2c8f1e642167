"""The numerics of mlx.estimators._nn: gradients against finite differences, losses against their
textbook formulas, numerical stability, optimisers against their update rules."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

from mlx.estimators import _nn

LAYERS = (5, 4, 3)  # input, two hidden layers (so dZ is propagated through a hidden layer)


def _targets(loss, n, k, rng):
    if loss == "cross_entropy":
        return np.eye(k)[rng.integers(0, k, n)]
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, (n, k)).astype(float)
    return rng.normal(size=(n, k))


def _objective(network, X, Y, **kwargs):
    return _nn.loss_and_gradient(network, np.empty_like(network.params), X, Y, **kwargs)


@pytest.mark.parametrize("alpha", [0.0, 0.3])
@pytest.mark.parametrize("loss", sorted(_nn.LOSSES))
@pytest.mark.parametrize("activation", sorted(_nn.ACTIVATIONS))
def test_gradient_matches_central_differences(activation, loss, alpha):
    rng = np.random.default_rng(0)
    n, k = 7, 3
    X = rng.normal(size=(n, LAYERS[0]))
    Y = _targets(loss, n, k, rng)
    network = _nn.Network((*LAYERS, k), np.float64).initialise(activation, np.random.RandomState(1))
    network.params += rng.normal(scale=0.3, size=network.params.shape)  # biases away from 0
    kwargs = dict(activation=activation, loss=loss, alpha=alpha)

    grads = np.empty_like(network.params)
    _nn.loss_and_gradient(network, grads, X, Y, **kwargs)

    h = 1e-6
    numeric = np.empty_like(grads)
    theta = network.params
    for i in range(theta.size):
        saved = theta[i]
        theta[i] = saved + h
        up = _objective(network, X, Y, **kwargs)
        theta[i] = saved - h
        down = _objective(network, X, Y, **kwargs)
        theta[i] = saved
        numeric[i] = (up - down) / (2 * h)
    rel = np.linalg.norm(grads - numeric) / (np.linalg.norm(grads) + np.linalg.norm(numeric))
    assert rel < 1e-6, f"relative error {rel:.2e} for {activation=}, {loss=}, {alpha=}"


def test_preallocated_buffers_give_the_same_gradient():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(9, 5)), _targets("cross_entropy", 9, 3, rng)
    network = _nn.Network((5, 6, 3), np.float64).initialise("relu", np.random.RandomState(0))
    kwargs = dict(activation="relu", loss="cross_entropy", alpha=0.1)
    plain, buffered = np.empty_like(network.params), np.empty_like(network.params)
    workspace = _nn.Workspace(network, buffered, 16)
    J = _nn.loss_and_gradient(network, plain, X, Y, **kwargs)
    J_buffered = _nn.loss_and_gradient(network, buffered, X, Y, workspace=workspace, **kwargs)
    assert_allclose(J, J_buffered)
    assert_allclose(plain, buffered)


def test_losses_equal_their_textbook_formulas():
    rng = np.random.default_rng(3)
    Z = rng.normal(scale=2, size=(6, 4))
    onehot, bits, real = (
        _targets(name, 6, 4, rng)
        for name in ("cross_entropy", "binary_cross_entropy", "squared_error")
    )
    P = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    S = 1 / (1 + np.exp(-Z))
    expected = {
        "cross_entropy": (onehot, -np.mean(np.sum(onehot * np.log(P), axis=1))),
        "binary_cross_entropy": (
            bits,
            -np.mean(np.sum(bits * np.log(S) + (1 - bits) * np.log(1 - S), axis=1)),
        ),
        "squared_error": (real, 0.5 * np.mean((Z - real) ** 2)),
    }
    for name, (Y, value) in expected.items():
        assert _nn.LOSSES[name](Z.copy(), Y) == pytest.approx(value, rel=1e-12), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_overflow_on_huge_inputs(dtype):
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0]], dtype=dtype)
    Y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype)
    # Every floating-point warning numpy would show becomes an error. Underflow stays
    # silent, as by numpy's default: e^-10000 rounding to 0 is the right answer.
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        for name in _nn.ACTIVATIONS:
            A = _nn.ACTIVATIONS[name](Z.copy())
            assert np.isfinite(A).all(), name
            assert np.isfinite(_nn.DERIVATIVES[name](A, np.ones_like(Z))).all(), name
        P = _nn.softmax(Z.copy())
        assert_allclose(P.sum(axis=1), 1, rtol=1e-6)
        assert np.isfinite(_nn.log_softmax(Z.copy())).all()
        assert_allclose(_nn.log_sigmoid(Z.copy())[0, :2], [0.0, -1e4])
        for name in _nn.LOSSES:
            dZ = Z.copy()
            value = _nn.LOSSES[name](dZ, Y)
            assert np.isfinite(value) and np.isfinite(dZ).all(), name
        # confidently wrong: the loss is as large as the logit margin, not inf
        assert _nn.cross_entropy(Z[:1].copy(), Y[:1]) == pytest.approx(2e4, rel=1e-6)


@pytest.mark.parametrize("activation", sorted(_nn.ACTIVATIONS))
def test_initialisation_bound_and_seed(activation):
    network = _nn.Network((30, 20, 5), np.float32)
    network.initialise(activation, np.random.RandomState(0))
    again = _nn.Network((30, 20, 5), np.float32).initialise(activation, np.random.RandomState(0))
    assert_allclose(network.params, again.params)
    W = network.coefs[0]
    bound = _nn.glorot_uniform_bound(30, 20, activation)
    assert np.abs(W).max() <= bound
    assert np.abs(W).max() > 0.9 * bound  # uniform over the whole interval, not a narrower one


def test_flat_buffer_views_write_through():
    network = _nn.Network((3, 2, 1), np.float64)
    coefs, intercepts = network.coefs, network.intercepts
    assert [c.shape for c in coefs] == [(3, 2), (2, 1)]
    assert [b.shape for b in intercepts] == [(2,), (1,)]
    coefs[1][:] = 7.0
    intercepts[0][:] = -1.0
    assert network.params[6:8].tolist() == [7.0, 7.0]
    assert network.params[8:10].tolist() == [-1.0, -1.0]
    assert network.n_weights == 8


def test_adam_follows_its_update_rule():
    rng = np.random.default_rng(4)
    theta, g1, g2 = rng.normal(size=(3, 5))
    adam = _nn.Adam(5, np.float64, learning_rate=0.1)
    params = theta.copy()
    adam.step(params, g1)
    adam.step(params, g2)
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = (1 - b1) * g1
    v = (1 - b2) * g1**2
    expected = theta - 0.1 * np.sqrt(1 - b2) / (1 - b1) * m / (np.sqrt(v) + eps)
    m, v = b1 * m + (1 - b1) * g2, b2 * v + (1 - b2) * g2**2
    expected -= 0.1 * np.sqrt(1 - b2**2) / (1 - b1**2) * m / (np.sqrt(v) + eps)
    assert_allclose(params, expected)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_follows_its_update_rule(nesterov):
    rng = np.random.default_rng(5)
    theta, g1, g2 = rng.normal(size=(3, 4))
    sgd = _nn.SGD(4, np.float64, learning_rate=0.1, momentum=0.5, nesterov=nesterov)
    params = theta.copy()
    sgd.step(params, g1)
    sgd.step(params, g2)
    expected, v = theta.copy(), np.zeros(4)
    for g in (g1, g2):
        v = 0.5 * v - 0.1 * g
        expected += 0.5 * v - 0.1 * g if nesterov else v
    assert_allclose(params, expected)


def test_train_epoch_lowers_the_loss_and_reports_the_mean_batch_objective():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(64, 3))
    Y = (X @ rng.normal(size=(3, 2)))[:, :2]
    network = _nn.Network((3, 8, 2), np.float64).initialise("tanh", np.random.RandomState(0))
    adam = _nn.Adam(network.params.size, np.float64, learning_rate=0.01)
    kwargs = dict(activation="tanh", loss="squared_error", alpha=0.0)
    before = _objective(network, X, Y, **kwargs)
    first = _nn.train_epoch(network, adam, X, Y, batch_size=64, **kwargs)
    assert first == pytest.approx(before)  # one full batch: the loss before its step
    for _ in range(50):
        last = _nn.train_epoch(
            network, adam, X, Y, batch_size=16, order=rng.permutation(64), **kwargs
        )
    assert last < 0.5 * first


def test_predict_logits_in_chunks_equals_one_forward_pass():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(11, 4))
    network = _nn.Network((4, 6, 3, 2), np.float64).initialise("relu", np.random.RandomState(0))
    coefs, intercepts = network.coefs, network.intercepts
    A = _nn.forward(X, coefs, intercepts, "relu")
    assert_allclose(_nn.predict_logits(network, X, "relu", chunk_rows=4), A[-1])
    hidden = _nn.predict_logits(network, X, "relu", upto=2, chunk_rows=3)
    assert_allclose(hidden, A[2])
    assert_allclose(_nn.predict_logits(network, hidden, "relu", start=2), A[-1])
