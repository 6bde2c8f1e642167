"""Recurrent layers (mlx.estimators._recurrent): gradients through time against central
differences in float64, for the parameters and the inputs; RNNClassifier and RNNRegressor:
learning what happens when, scikit-learn compatibility, training control, errors."""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupShuffleSplit, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from mlx.estimators import RNNClassifier, RNNRegressor, _deep, _nn, _recurrent

quiet_convergence = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

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
def test_initialisation_is_pytorchs_and_seeded(cell):
    layer = _recurrent.RECURRENT_LAYERS[cell](3, 25)
    k = 1 / 5  # 1 / sqrt(H)

    def draw(seed, dtype):
        p = {name: np.zeros(s, dtype) for name, s in layer.parameter_shapes().items()}
        layer.initialise(p, np.random.RandomState(seed))
        return p

    a, b = draw(0, np.float64), draw(0, np.float32)
    for name in a:
        assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7)
    assert not np.allclose(draw(1, np.float64)["W"], a["W"])
    for name in ("W", "U"):  # uniform over the whole of (-k, k)
        assert k * 0.9 < np.abs(a[name]).max() <= k
    # PyTorch's b_ih + b_hh: up to 2k where both biases add, k in the GRU's candidate block
    twice = layer.n_biased_twice * 25
    assert k < np.abs(a["b"][:twice]).max() <= 2 * k
    assert np.abs(a["b"][twice:]).max(initial=0) <= k


# --- the network (the protocol of _deep: flat buffers, a head on the last hidden state) -----


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", sorted(_recurrent.RECURRENT_LAYERS))
def test_network_gradient_matches_central_differences(cell, num_layers):
    # The whole training objective: cells, head, cross-entropy and the L2 penalty on the
    # weights the layout marks (W, U of every layer and the head's V, not the biases).
    rng = np.random.default_rng(2)
    n, C, T, k = 4, 3, 5, 3
    network = _recurrent.RecurrentNetwork(
        (C, T), k, cell=cell, hidden_size=4, num_layers=num_layers, dtype=np.float64
    ).initialise(np.random.RandomState(0))
    network.params += rng.normal(scale=0.2, size=network.params.shape)
    X = rng.normal(size=(n, C, T))
    Y = np.eye(k)[rng.integers(0, k, n)]
    kwargs = dict(loss="cross_entropy", alpha=0.3)
    n_weights = sum(network.p[name].size for name in network.p if name.split(".")[1] in "WUV")
    assert network.n_weights == n_weights

    _deep.loss_and_gradient(network, X, Y, **kwargs)
    analytic = network.grads.copy()
    numeric = _central_differences(
        lambda: _deep.loss_and_gradient(network, X, Y, **kwargs), [network.params]
    )
    rel = _relative_error(analytic, numeric)
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


# --- the estimators -----------------------------------------------------------------------


def _bump_sequences(n, *, channels=2, steps=16, seed=0):
    """Class 1: a bump late in the sequence, class 0: the same bump early, in channel 0 of
    ``channels`` noisy channels. Rows are flattened band-major, as LogMelSpectrogram's are:
    ``input_shape=(channels, steps)``. Any statistic pooled over time has the same
    distribution in both classes; only the order of the frames tells them apart."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(scale=0.5, size=(n, channels, steps))
    where = np.where(y == 1, rng.integers(10, 14, n), rng.integers(2, 6, n))
    X[np.arange(n), 0, where] += 3.0
    return X.reshape(n, channels * steps), y


def _pooled(X, channels=2):
    frames = X.reshape(len(X), channels, -1)
    return np.hstack([f(frames, axis=2) for f in (np.mean, np.std, np.min, np.max)])


@pytest.fixture(scope="module")
def bumps():
    X, y = _bump_sequences(600)
    return train_test_split(X, y, test_size=0.3, random_state=0)


@quiet_convergence
@pytest.mark.parametrize("cell", sorted(_recurrent.RECURRENT_LAYERS))
def test_learns_the_order_of_frames_that_pooled_statistics_miss(cell, bumps):
    X_train, X_test, y_train, y_test = bumps
    pooled = LogisticRegression().fit(_pooled(X_train), y_train)
    assert pooled.score(_pooled(X_test), y_test) < 0.65
    clf = RNNClassifier(
        cell, hidden_size=16, input_shape=(2, 16), learning_rate_init=0.01, max_iter=15
    )
    clf.set_params(random_state=0).fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.95
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]


@quiet_convergence
def test_two_layers_and_the_regressor_learn_too(bumps):
    X_train, X_test, y_train, y_test = bumps
    kwargs = dict(hidden_size=12, input_shape=(2, 16), learning_rate_init=0.01, random_state=0)
    two = RNNClassifier("lstm", num_layers=2, max_iter=15, **kwargs).fit(X_train, y_train)
    assert two.score(X_test, y_test) >= 0.95
    assert two._network.p["1.U"].shape == (12, 48)
    # where the bump is, as a number: the regressor must locate it in time
    frames = X_train.reshape(len(X_train), 2, 16)[:, 0]
    position = frames.argmax(axis=1) / 16.0
    reg = RNNRegressor(max_iter=30, **kwargs).fit(X_train, position)
    assert reg.score(X_train, position) > 0.8
    assert reg.predict(X_test).dtype == np.float64


@quiet_convergence
def test_random_state_makes_training_reproducible():
    X, y = _bump_sequences(120, seed=1)
    kwargs = dict(hidden_size=6, input_shape=(2, 16), max_iter=3)
    a = RNNClassifier(random_state=3, **kwargs).fit(X, y)
    b = RNNClassifier(random_state=3, **kwargs).fit(X, y)
    c = RNNClassifier(random_state=4, **kwargs).fit(X, y)
    assert a.loss_curve_ == b.loss_curve_
    assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.loss_curve_ != c.loss_curve_


@quiet_convergence
def test_float32_by_default_and_float64_on_request():
    X, y = _bump_sequences(60, seed=2)
    clf = RNNClassifier(hidden_size=4, input_shape=(2, 16), max_iter=2, random_state=0)
    assert clf.fit(X, y)._network.params.dtype == np.float32
    assert clf.predict_proba(X).dtype == np.float32
    clf64 = clone(clf).set_params(dtype="float64").fit(X, y)
    assert clf64._network.params.dtype == np.float64
    # the same draws, so the two agree to float32 rounding after two epochs
    assert_allclose(clf.predict_proba(X), clf64.predict_proba(X), atol=1e-3)


@quiet_convergence
def test_clone_pickle_pipeline_and_grid_search(bumps):
    X_train, X_test, y_train, y_test = bumps
    clf = RNNClassifier(hidden_size=8, input_shape=(2, 16), max_iter=4, random_state=0)
    assert clone(clf).get_params() == clf.get_params()
    clf.fit(X_train, y_train)
    again = pickle.loads(pickle.dumps(clf))
    assert_array_equal(again.predict_proba(X_test), clf.predict_proba(X_test))
    pipe = make_pipeline(StandardScaler(), clone(clf)).fit(X_train, y_train)
    assert pipe.predict(X_test).shape == y_test.shape
    search = GridSearchCV(clone(clf), {"cell": ["gru", "lstm"]}, cv=2).fit(X_train, y_train)
    assert search.best_params_["cell"] in {"gru", "lstm"}
    assert len(search.cv_results_["mean_test_score"]) == 2


@pytest.mark.parametrize("cell", sorted(_recurrent.RECURRENT_LAYERS))
def test_partial_fit_runs_one_epoch_and_k_calls_equal_fit(cell):
    X, y = _bump_sequences(100, seed=3)
    kwargs = dict(hidden_size=5, input_shape=(2, 16), batch_size=32, random_state=0)
    stepped = RNNClassifier(cell, **kwargs)
    stepped.partial_fit(X, y, classes=[0, 1])
    assert stepped.n_iter_ == 1 and len(stepped.loss_curve_) == 1 and stepped.t_ == 100
    stepped.partial_fit(X, y)
    stepped.partial_fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = RNNClassifier(cell, max_iter=3, **kwargs).fit(X, y)
    assert stepped.n_iter_ == 3
    assert_allclose(stepped.loss_curve_, fitted.loss_curve_)
    assert_allclose(stepped._network.params, fitted._network.params)


def test_clip_norm_bounds_the_step():
    # Plain SGD (no momentum, no L2) on one batch: the step is learning_rate * g, so its norm
    # is learning_rate * min(||g||, clip_norm).
    X, y = _bump_sequences(40, seed=4)
    kwargs = dict(hidden_size=6, input_shape=(2, 16), solver="sgd", momentum=0.0, alpha=0.0)
    kwargs.update(batch_size=40, learning_rate_init=1.0, shuffle=False, dtype=np.float64)

    def step(clip_norm):
        clf = RNNClassifier(clip_norm=clip_norm, random_state=0, **kwargs)
        start = clf.partial_fit(X[:2], y[:2], classes=[0, 1])  # builds the network ...
        start._network.initialise(np.random.RandomState(0))  # ... reset to the same start
        before = start._network.params.copy()
        start._run_epoch(*start._validate_training_data(X, y, reset=False))
        return np.linalg.norm(start._network.params - before)

    unclipped = step(None)
    assert unclipped > 0.1
    assert step(0.05) == pytest.approx(0.05, rel=1e-9)
    assert step(10 * unclipped) == pytest.approx(unclipped, rel=1e-9)


def test_early_stopping_restores_the_weights_of_the_best_epoch():
    X, y = _bump_sequences(300, seed=5)
    kwargs = dict(hidden_size=8, input_shape=(2, 16), learning_rate_init=0.02, random_state=0)
    # tol > 0: an equal score is no improvement, so a plateau at the best score stops the run
    kwargs.update(early_stopping=True, validation_fraction=0.2, n_iter_no_change=3, tol=1e-6)
    stopped = RNNClassifier(max_iter=40, **kwargs).fit(X, y)
    scores = stopped.validation_scores_
    best = int(np.argmax(scores)) + 1  # the first epoch with the best score
    assert stopped.best_validation_score_ == max(scores)
    assert stopped.n_iter_ > best  # it ran on past the best epoch ...
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        at_best = RNNClassifier(max_iter=best, **kwargs).fit(X, y)
    # ... and came back: the same split, shuffles and steps up to epoch `best`
    assert_allclose(stopped._network.params, at_best._network.params)
    assert at_best.validation_scores_ == scores[:best]


@quiet_convergence
def test_errors_say_what_is_wrong():
    X, y = _bump_sequences(30, seed=6)
    with pytest.raises(InvalidParameterError, match="'cell' parameter of RNNClassifier"):
        RNNClassifier(cell="rnn").fit(X, y)
    with pytest.raises(InvalidParameterError, match="'hidden_size' parameter"):
        RNNClassifier(hidden_size=0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="'num_layers' parameter"):
        RNNRegressor(num_layers=0).fit(X, y)
    with pytest.raises(ValueError, match=r"input_shape=\(3, 16\) implies rows of 48 features"):
        RNNClassifier(input_shape=(3, 16)).fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        RNNClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        RNNClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        RNNClassifier(max_iter=1).fit(X, np.zeros(30))
    # The gates saturate rather than overflow; the head's weights are what diverge.
    with pytest.raises(ValueError, match=r"The training loss became (inf|nan) in epoch \d+"):
        RNNRegressor(hidden_size=4, solver="sgd", learning_rate_init=1e8, max_iter=20).fit(X, y)
    fitted = RNNClassifier(hidden_size=4, input_shape=(2, 16), max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="X has 16 features, but RNNClassifier is expecting 32"):
        fitted.predict(X[:, :16])


# --- the contour task: melodies told apart by the order of their notes (slow) -------------


@pytest.fixture(scope="module")
def contour_frames():
    from mlx.audio import LogMelSpectrogram, make_contour_sounds

    clips, labels, groups = make_contour_sounds(300, duration=1.0, random_state=0)
    frames = LogMelSpectrogram().fit(clips)  # 40 mel bands x 32 frames
    train, test = next(
        GroupShuffleSplit(1, test_size=0.3, random_state=0).split(labels, labels, groups)
    )
    return frames.transform(clips), labels, train, test, frames.output_shape_


@pytest.mark.slow
@quiet_convergence
@pytest.mark.parametrize("cell", sorted(_recurrent.RECURRENT_LAYERS))
def test_learns_melodic_contours_of_unseen_recordings(cell, contour_frames):
    # Pooled statistics leave this task at chance (tests/test_audio_frames.py); the case (c)
    # network of bench/deep.py learns it. Test recordings (instrument, timbre, base pitch) are
    # never seen in training. Seeds 0-2 of the GRU gave 0.962-0.976 with 300 clips per contour.
    X, labels, train, test, shape = contour_frames
    clf = RNNClassifier(
        cell, hidden_size=64, input_shape=shape, learning_rate_init=2e-3, max_iter=25
    )
    model = make_pipeline(StandardScaler(), clf.set_params(clip_norm=5.0, random_state=0))
    model.fit(X[train], labels[train])
    assert model.score(X[test], labels[test]) >= 0.9


# --- against PyTorch, where it is installed (the benchmark environment) -------------------

# Our gate blocks in PyTorch's order: the GRU's are the same ([r | z | h~] = [r | z | n]);
# the LSTM's [i | f | o | g] are PyTorch's blocks (i, f, g, o) 0, 1, 3, 2.
_TORCH_BLOCKS = {"gru": [0, 1, 2], "lstm": [0, 1, 3, 2]}


def _torch_rows(a, cell):
    """PyTorch's (G H, ...) gate-stacked array with its blocks in our order."""
    blocks = np.split(a, len(_TORCH_BLOCKS[cell]))
    return np.concatenate([blocks[i] for i in _TORCH_BLOCKS[cell]])


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", sorted(_recurrent.RECURRENT_LAYERS))
def test_outputs_and_gradients_equal_pytorchs_on_the_same_weights(cell, num_layers):
    torch = pytest.importorskip("torch")
    n, C, T, H, k = 6, 3, 9, 5, 4
    torch.manual_seed(0)
    rnn = getattr(torch.nn, cell.upper())(C, H, num_layers=num_layers, dtype=torch.float64)
    head = torch.nn.Linear(H, k, dtype=torch.float64)
    network = _recurrent.RecurrentNetwork(
        (C, T), k, cell=cell, hidden_size=H, num_layers=num_layers, dtype=np.float64
    )
    for layer in range(num_layers):
        theirs = {
            name: getattr(rnn, f"{name}_l{layer}").detach().numpy()
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        }
        ours = network._p[layer]
        ours["W"][...] = _torch_rows(theirs["weight_ih"], cell).T
        ours["U"][...] = _torch_rows(theirs["weight_hh"], cell).T
        if cell == "gru":  # b_hh of the candidate sits inside the reset gate: b_u
            ours["b"][...] = theirs["bias_ih"] + np.r_[theirs["bias_hh"][: 2 * H], np.zeros(H)]
            ours["b_u"][...] = theirs["bias_hh"][2 * H :]
        else:
            ours["b"][...] = _torch_rows(theirs["bias_ih"] + theirs["bias_hh"], cell)
    network.p["head.V"][...] = head.weight.detach().numpy().T
    network.p["head.c"][...] = head.bias.detach().numpy()

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, C, T))
    labels = rng.integers(0, k, n)
    out, _ = rnn(torch.from_numpy(X.transpose(2, 0, 1).copy()))  # (T, n, C): time first
    Z_torch = head(out[-1])
    torch.nn.functional.cross_entropy(Z_torch, torch.from_numpy(labels)).backward()

    Z = network.forward(X, training=True)
    assert_allclose(Z, Z_torch.detach().numpy(), rtol=1e-12, atol=1e-13)
    _nn.cross_entropy(Z, np.eye(k)[labels])
    network.backward(Z)
    assert_allclose(network.g["head.V"], head.weight.grad.numpy().T, rtol=1e-10, atol=1e-13)
    assert_allclose(network.g["head.c"], head.bias.grad.numpy(), rtol=1e-10, atol=1e-13)
    for layer in range(num_layers):
        grad = {
            name: getattr(rnn, f"{name}_l{layer}").grad.numpy()
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        }
        g = network._g[layer]
        tight = dict(rtol=1e-10, atol=1e-13)
        assert_allclose(g["W"], _torch_rows(grad["weight_ih"], cell).T, **tight)
        assert_allclose(g["U"], _torch_rows(grad["weight_hh"], cell).T, **tight)
        assert_allclose(g["b"], _torch_rows(grad["bias_ih"], cell), **tight)
        if cell == "gru":
            assert_allclose(g["b_u"], grad["bias_hh"][2 * H :], **tight)
