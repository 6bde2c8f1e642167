"""CNNClassifier and CNNRegressor (and the deep-net training base of ._deep): the whole network's
gradient against central differences, learning a pattern whose class is the order of values,
the input layout, training control (reproducibility, partial_fit epochs, early stopping,
clipping), scikit-learn compatibility and every error message."""

import pickle
import tracemalloc
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlx.estimators import CNNClassifier, CNNRegressor
from mlx.estimators._deep import loss_and_gradient

quiet_convergence = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _ramps(n, steps=24, channels=1, seed=0, channel=0):
    """A rising (class 1) or falling (class 0) ramp of 4 steps at a random place in one channel
    of noise: both classes hold the same values, only their order differs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(scale=0.3, size=(n, channels, steps))
    ramp = np.linspace(-2, 2, 4)
    for row, label, start in zip(X, y, rng.integers(0, steps - 3, n)):
        row[channel, start : start + 4] += ramp if label else -ramp
    return X.reshape(n, -1), y


@pytest.fixture(scope="module")
def ramps():
    X, y = _ramps(400)
    return X[:300], X[300:], y[:300], y[300:]


FAST = dict(filters=(8, 8), kernel_size=4, learning_rate_init=0.01, random_state=0)


# --- the network's gradient -----------------------------------------------------------------

NETWORKS = [
    dict(),
    dict(conv="2d", kernel_size=(3, 2), pool_size=(2, 3), filters=(3, 2)),
    dict(pool="avg", global_pool="max", activation="tanh"),
    dict(pool=None, global_pool=None, padding="valid", activation="sigmoid"),
    dict(hidden_layer_sizes=(5,), dropout=0.3, activation="leaky_relu", kernel_size=2),
    dict(conv="2d", kernel_size=2, pool="avg", global_pool=None, hidden_layer_sizes=(4, 3)),
]


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("config", NETWORKS)
def test_network_gradient_matches_central_differences(config, n_classes):
    # The whole objective of a training step (data loss + L2), in float64: every layer, its
    # wiring in the network and the flat gradient buffer.
    rng = np.random.default_rng(0)
    n, shape = 5, (3, 7)
    X = rng.normal(size=(n, *shape))
    estimator = CNNClassifier(**{"filters": (3, 4), "kernel_size": 3, **config})
    k = 1 if n_classes == 2 else n_classes
    loss = "binary_cross_entropy" if n_classes == 2 else "cross_entropy"
    Y = np.eye(n_classes)[rng.integers(0, n_classes, n)][:, -k:]
    network = estimator._build_network(shape, k, np.float64)
    network.initialise(np.random.RandomState(1))
    network.params += rng.normal(scale=0.3, size=network.params.shape)  # biases away from 0

    def objective():  # the same dropout masks at every evaluation
        return loss_and_gradient(network, X, Y, loss=loss, alpha=0.3, rng=np.random.default_rng(2))

    objective()
    analytic = network.grads.copy()
    h, theta = 1e-6, network.params
    numeric = np.empty_like(theta)
    for i in range(theta.size):
        saved = theta[i]
        theta[i] = saved + h
        up = objective()
        theta[i] = saved - h
        down = objective()
        theta[i] = saved
        numeric[i] = (up - down) / (2 * h)
    rel = np.linalg.norm(analytic - numeric) / (np.linalg.norm(analytic) + np.linalg.norm(numeric))
    assert rel < 1e-6, f"relative error {rel:.2e} for {config}"


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("conv", ["1d", "2d"])
def test_network_equals_pytorch_on_the_same_weights(conv, pool):
    # Only where PyTorch is installed (the benchmark environment): logits and every gradient.
    torch = pytest.importorskip("torch")
    nn = torch.nn
    rng = np.random.default_rng(0)
    shape, n, k = (3, 9), 5, 4
    X = rng.normal(size=(n, *shape))
    Y = np.eye(k)[rng.integers(0, k, n)]
    estimator = CNNClassifier((4, 6), conv=conv, kernel_size=3, pool=pool, hidden_layer_sizes=(5,))
    network = estimator._build_network(shape, k, np.float64).initialise(np.random.RandomState(1))
    network.params += rng.normal(scale=0.1, size=network.params.shape)
    Conv, Pool = (nn.Conv1d, nn.MaxPool1d) if conv == "1d" else (nn.Conv2d, nn.MaxPool2d)
    if pool == "avg":
        Pool = nn.AvgPool1d if conv == "1d" else nn.AvgPool2d
    layers = [Conv(3 if conv == "1d" else 1, 4, 3, padding=1), nn.ReLU(), Pool(2, ceil_mode=True)]
    layers += [Conv(4, 6, 3, padding=1), nn.ReLU(), Pool(2, ceil_mode=True)]
    layers += [nn.Flatten(2), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(6, 5), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(5, k)).double()
    convs, linears = (
        [m for m in model if isinstance(m, Conv)],
        [m for m in model if isinstance(m, nn.Linear)],
    )
    with torch.no_grad():
        for i, m in enumerate(convs):
            m.weight[...] = torch.tensor(network.p[f"W{i}"])
            m.bias[...] = torch.tensor(network.p[f"b{i}"])
        for j, m in enumerate(linears):
            m.weight[...] = torch.tensor(network.p[f"V{j}"].T)
            m.bias[...] = torch.tensor(network.p[f"c{j}"])
    tX = torch.tensor(X if conv == "1d" else X[:, None])
    logits = model(tX)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(Y.argmax(1)))
    loss.backward()
    assert_allclose(network.forward(X).copy(), logits.detach().numpy(), rtol=1e-10)
    J = loss_and_gradient(network, X, Y.copy(), loss="cross_entropy", alpha=0.0)
    assert_allclose(J, loss.item(), rtol=1e-12)
    for i, m in enumerate(convs):
        assert_allclose(network.g[f"W{i}"], m.weight.grad.numpy(), rtol=1e-9, atol=1e-12)
        assert_allclose(network.g[f"b{i}"], m.bias.grad.numpy(), rtol=1e-9, atol=1e-12)
    for j, m in enumerate(linears):
        assert_allclose(network.g[f"V{j}"], m.weight.grad.numpy().T, rtol=1e-9, atol=1e-12)
        assert_allclose(network.g[f"c{j}"], m.bias.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_initial_weights_and_biases_are_uniform_over_one_over_root_fan_in():
    network = CNNClassifier((16, 8), conv="2d", kernel_size=3, hidden_layer_sizes=(12,))
    network = network._build_network((10, 12), 3, np.float64)
    network.initialise(np.random.RandomState(0))
    fan_ins = {"W0": 9, "b0": 9, "W1": 16 * 9, "b1": 16 * 9, "V0": 8, "c0": 8, "V1": 12, "c1": 12}
    assert set(network.p) == set(fan_ins)
    for name, fan_in in fan_ins.items():
        values, bound = network.p[name], 1 / np.sqrt(fan_in)
        assert np.abs(values).max() <= bound
        if values.size >= 50:  # uniform over the whole interval, not a narrower one
            assert np.abs(values).max() > 0.9 * bound


# --- learning -------------------------------------------------------------------------------


@quiet_convergence
@pytest.mark.parametrize("conv", ["1d", "2d"])
def test_learns_the_order_of_values(conv, ramps):
    X_train, X_test, y_train, y_test = ramps
    # Without order the task is at chance: the sorted values of a row carry no class.
    order_blind = LogisticRegression().fit(np.sort(X_train), y_train)
    assert order_blind.score(np.sort(X_test), y_test) < 0.65
    kwargs = dict(FAST, kernel_size=(1, 4)) if conv == "2d" else FAST
    clf = CNNClassifier(conv=conv, max_iter=40, **kwargs).fit(X_train, y_train)
    assert clf.score(X_test, y_test) > 0.95


@quiet_convergence
def test_learns_a_pattern_in_one_channel_of_several():
    X, y = _ramps(400, steps=20, channels=3, channel=1, seed=1)
    clf = CNNClassifier(input_shape=(3, 20), max_iter=40, **FAST).fit(X[:300], y[:300])
    assert clf.input_shape_ == (3, 20)
    assert clf.score(X[300:], y[300:]) > 0.95


def test_a_row_is_the_c_order_flattening_of_channels_by_steps():
    # One kernel of width 2 ('same' padding adds a zero after the end), identity activation,
    # no pooling, global average pooling and a 1 -> 1 output layer: the logit is a formula.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(6, 2 * 5)).astype(np.float32)
    reg = CNNRegressor((1,), kernel_size=2, pool=None, activation="identity", random_state=0)
    reg.set_params(input_shape=(2, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.set_params(max_iter=1).fit(X, rng.normal(size=6))
    network = reg._network
    W, b, V, c = (network.p[name] for name in ("W0", "b0", "V0", "c0"))
    frames = np.pad(X.reshape(6, 2, 5), ((0, 0), (0, 0), (0, 1)))
    conv = b[0] + sum(W[0, ch, j] * frames[:, ch, j : j + 5] for ch in range(2) for j in range(2))
    assert_allclose(reg.predict(X), conv.mean(axis=1) * V[0, 0] + c[0], rtol=1e-5, atol=1e-6)


@quiet_convergence
def test_regressor_learns_the_height_of_a_bump_anywhere():
    rng = np.random.default_rng(0)
    height = rng.uniform(0.5, 2, 300)
    X = rng.normal(scale=0.1, size=(300, 20))
    X[np.arange(300), rng.integers(0, 20, 300)] += height
    reg = CNNRegressor((8,), kernel_size=3, learning_rate_init=0.03, max_iter=100, random_state=0)
    reg.fit(X[:200], height[:200])
    assert reg.score(X[200:], height[200:]) > 0.8
    assert reg.predict(X).dtype == np.float64 and reg.predict(X).shape == (300,)
    two = CNNRegressor((4,), kernel_size=3, max_iter=2, random_state=0)
    assert two.fit(X, np.column_stack([height, -height])).predict(X).shape == (300, 2)


# --- the classifier's outputs ---------------------------------------------------------------


@quiet_convergence
def test_binary_and_multiclass_outputs_with_any_labels(ramps):
    X_train, _, y_train, _ = ramps
    names = np.array(["down", "up"])[y_train]
    binary = CNNClassifier(max_iter=3, **FAST).fit(X_train, names)
    assert binary.n_outputs_ == 1 and binary.out_activation_ == "sigmoid"
    assert set(binary.predict(X_train)) <= {"down", "up"}
    three = np.where(X_train[:, 0] > 1, 2, y_train)
    multi = CNNClassifier(max_iter=3, **FAST).fit(X_train, three)
    assert multi.n_outputs_ == 3 and multi.out_activation_ == "softmax"
    for clf in (binary, multi):
        P = clf.predict_proba(X_train)
        assert P.shape == (300, len(clf.classes_)) and P.dtype == np.float32
        assert_allclose(P.sum(axis=1), 1, rtol=1e-5)
        assert_allclose(np.exp(clf.predict_log_proba(X_train)), P, atol=1e-6)
        assert_array_equal(clf.classes_[P.argmax(axis=1)], clf.predict(X_train))


@quiet_convergence
@pytest.mark.parametrize("dtype", [np.float32, "float64"])
def test_dtype_sets_the_working_precision(dtype, ramps):
    X_train, _, y_train, _ = ramps
    clf = CNNClassifier(max_iter=1, dtype=dtype, **FAST).fit(X_train, y_train)
    assert clf._network.params.dtype == np.dtype(dtype)
    assert clf.predict_proba(X_train).dtype == np.dtype(dtype)


# --- training control -----------------------------------------------------------------------


@quiet_convergence
def test_same_random_state_same_network(ramps):
    X_train, X_test, y_train, _ = ramps
    make = lambda seed: CNNClassifier(  # noqa: E731
        max_iter=2, dropout=0.3, hidden_layer_sizes=(8,), **dict(FAST, random_state=seed)
    ).fit(X_train, y_train)
    a, b, c = make(0), make(0), make(1)
    assert_array_equal(a._network.params, b._network.params)
    assert_array_equal(a.predict_proba(X_test), b.predict_proba(X_test))
    assert not np.array_equal(a._network.params, c._network.params)


@quiet_convergence
@pytest.mark.parametrize("Estimator", [CNNClassifier, CNNRegressor])
def test_partial_fit_epochs_continue_fit_exactly(Estimator, ramps):
    X_train, _, y_train, _ = ramps
    kwargs = dict(FAST, dropout=0.2, hidden_layer_sizes=(6,))
    fitted = Estimator(max_iter=3, **kwargs).fit(X_train, y_train)
    stepped = Estimator(**kwargs)
    for _ in range(3):
        if Estimator is CNNClassifier:
            stepped.partial_fit(X_train, y_train, classes=[0, 1])
        else:
            stepped.partial_fit(X_train, y_train)
    assert stepped.n_iter_ == 3 and stepped.t_ == 900
    assert_allclose(stepped.loss_curve_, fitted.loss_curve_)
    assert_array_equal(stepped._network.params, fitted._network.params)
    stepped.partial_fit(X_train, y_train)
    assert stepped.n_iter_ == 4 and stepped.loss_curve_[-1] < stepped.loss_curve_[0]
    assert stepped.best_loss_ == min(stepped.loss_curve_)


def test_partial_fit_needs_classes_then_refuses_unknown_labels(ramps):
    X_train, _, y_train, _ = ramps
    with pytest.raises(ValueError, match="classes must be passed"):
        CNNClassifier().partial_fit(X_train, y_train)
    clf = CNNClassifier(**FAST).partial_fit(X_train[:50], y_train[:50], classes=[0, 1, 2])
    assert clf.predict_proba(X_train).shape == (300, 3)
    with pytest.raises(ValueError, match=r"labels not in classes_=\[0, 1, 2\]: \[7\]"):
        clf.partial_fit(X_train[:2], [7, 1])


def test_partial_fit_refuses_early_stopping(ramps):
    X_train, _, y_train, _ = ramps
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        CNNClassifier(early_stopping=True).partial_fit(X_train, y_train, classes=[0, 1])


def test_early_stopping_keeps_the_best_validation_weights(ramps):
    X_train, _, y_train, _ = ramps
    kwargs = dict(FAST, early_stopping=True, learning_rate_init=0.05)
    clf = CNNClassifier(n_iter_no_change=3, max_iter=100, **kwargs).fit(X_train, y_train)
    assert clf.n_iter_ < 100
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None
    best_epoch = int(np.argmax(clf.validation_scores_)) + 1
    assert best_epoch < clf.n_iter_  # the last epochs did not improve
    replay = CNNClassifier(n_iter_no_change=10**6, max_iter=best_epoch, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        replay.fit(X_train, y_train)
    assert_array_equal(replay._network.params, clf._network.params)


def test_clip_norm_bounds_every_step():
    # Plain SGD (no momentum): each step moves the parameters by at most eta * clip_norm.
    X, y = _ramps(128)
    kwargs = dict(solver="sgd", momentum=0.0, learning_rate_init=1.0, batch_size=32, alpha=0.0)
    clf = CNNClassifier(clip_norm=1e-3, random_state=0, **kwargs)
    clf.partial_fit(X, y, classes=[0, 1])
    start = CNNClassifier(random_state=0, max_iter=1, **kwargs)
    start._validate_training_data(X, y, reset=True)
    start._initialise(X.shape[1])
    moved = np.linalg.norm(clf._network.params - start._network.params)
    assert 0 < moved <= 4 * 1e-3 * (1 + 1e-5)  # 4 batches


def test_convergence_warning_only_when_cut_off(ramps):
    X_train, _, y_train, _ = ramps
    with pytest.warns(ConvergenceWarning, match=r"max_iter=2"):
        CNNClassifier(max_iter=2, **FAST).fit(X_train, y_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = CNNClassifier(max_iter=100, tol=10.0, n_iter_no_change=2, **FAST)
        clf.fit(X_train, y_train)
    assert clf.n_iter_ == 4  # epoch 1 improves on inf, then 3 epochs without improvement


def test_memory_of_an_epoch_is_bounded_by_the_batch_not_the_data():
    peaks, sizes = [], []
    for n in (256, 4096):
        X, y = _ramps(n, steps=64)
        X = X.astype(np.float32)  # no converted copy of the data
        clf = CNNClassifier((4,), random_state=0).partial_fit(X, y, classes=[0, 1])
        tracemalloc.start()
        clf.partial_fit(X, y)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        sizes.append(X.nbytes)
    # 16x the rows and the same batches: the peak grows by the per-row bookkeeping (the
    # permutation, the encoded targets), far less than a shuffled copy of the data would add.
    assert peaks[1] - peaks[0] < 0.25 * (sizes[1] - sizes[0]), (peaks, sizes)


@quiet_convergence
def test_verbose_prints_every_epoch(ramps, capsys):
    X_train, _, y_train, _ = ramps
    CNNClassifier(max_iter=2, verbose=True, early_stopping=True, **FAST).fit(X_train, y_train)
    out = capsys.readouterr().out
    assert out.count("Iteration") == 2 and out.count("Validation score") == 2


# --- scikit-learn compatibility -------------------------------------------------------------


@quiet_convergence
def test_clone_pickle_pipeline_and_grid_search(ramps):
    X_train, X_test, y_train, y_test = ramps
    clf = CNNClassifier(max_iter=2, **FAST).fit(X_train, y_train)
    assert clone(clf).get_params() == clf.get_params()
    copy = pickle.loads(pickle.dumps(clf))
    assert_array_equal(copy.predict_proba(X_test), clf.predict_proba(X_test))
    clf.partial_fit(X_train, y_train)
    copy.partial_fit(X_train, y_train)  # the optimiser state and random stream travel too
    assert_array_equal(copy._network.params, clf._network.params)
    copy._network.p["W0"][:] = 0  # the named arrays are views of the flat buffer
    assert not np.array_equal(copy.predict_proba(X_test), clf.predict_proba(X_test))

    pipe = make_pipeline(StandardScaler(), CNNClassifier(max_iter=30, **FAST))
    assert pipe.fit(X_train, y_train).score(X_test, y_test) > 0.9
    grid = {"cnnclassifier__kernel_size": [1, 4]}
    search = GridSearchCV(pipe.set_params(cnnclassifier__max_iter=20), grid, cv=2)
    search.fit(X_train, y_train)
    assert search.best_params_ == {"cnnclassifier__kernel_size": 4}  # width 1 sees no order


# --- errors ---------------------------------------------------------------------------------


def test_input_shape_that_does_not_fit_the_rows(ramps):
    X_train, _, y_train, _ = ramps
    with pytest.raises(ValueError, match=r"input_shape=\(5, 6\) implies rows of 30 .* has 24"):
        CNNClassifier(input_shape=(5, 6)).fit(X_train, y_train)
    with pytest.raises(ValueError, match=r"input_shape must be None, \(steps,\) or \(channels"):
        CNNClassifier(input_shape=(2, 3, 4)).fit(X_train, y_train)
    clf = CNNClassifier(input_shape=[24], max_iter=1, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert clf.fit(X_train, y_train).input_shape_ == (1, 24)


@pytest.mark.parametrize(
    "params, message",
    [
        (
            dict(kernel_size=30, padding="valid"),
            r"kernel_size=30 is longer than the sequence at "
            r"block 1: the input has size 24",
        ),
        (
            dict(filters=(4, 4, 4), kernel_size=5, padding="valid"),
            r"at block 3: the input of "
            r"block 3 \(after pooling\) has size 3",
        ),
        (
            dict(conv="2d", kernel_size=(2, 5), padding="valid", input_shape=(4, 6)),
            r"kernel_size=\(2, 5\) is longer than the sequence at block 2: .* size \(2, 1\)",
        ),
    ],
)
def test_kernel_longer_than_the_sequence_names_the_block(params, message, ramps):
    X_train, _, y_train, _ = ramps
    with pytest.raises(ValueError, match=message):
        CNNClassifier(**params).fit(X_train, y_train)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(filters=()), r"filters must be a sequence of positive ints, got \(\)"),
        (dict(filters=(4, 0)), r"filters must be a sequence of positive ints, got \(4, 0\)"),
        (
            dict(kernel_size=(3, 3)),
            r"kernel_size must be a positive int or a sequence of 1 positive int\(s\)",
        ),
        (
            dict(conv="2d", pool_size=(2, 2, 2)),
            r"pool_size must be a positive int or a sequence of 2 positive",
        ),
        (dict(hidden_layer_sizes=(8, -1)), r"hidden_layer_sizes must be a sequence of posi"),
        (dict(pool="median"), r"The 'pool' parameter of CNNClassifier must be"),
    ],
)
def test_bad_architecture_parameters_are_named(params, message, ramps):
    X_train, _, y_train, _ = ramps
    with pytest.raises(ValueError, match=message):
        CNNClassifier(**params).fit(X_train, y_train)


def test_divergence_stops_with_the_fix_in_the_message():
    rng = np.random.default_rng(0)
    X = rng.normal(scale=1e3, size=(200, 10))
    y = X @ rng.normal(size=10)
    reg = CNNRegressor((8,), solver="sgd", learning_rate_init=10.0, max_iter=20, random_state=0)
    with pytest.raises(ValueError, match=r"Lower learning_rate_init \(now 10.0\), set clip_norm"):
        reg.fit(X, y)


def test_too_small_validation_split_and_single_class(ramps):
    X_train, _, y_train, _ = ramps
    with pytest.raises(ValueError, match=r"validation_fraction=0.01 of n_samples=100 gives 1 "):
        CNNClassifier(early_stopping=True, validation_fraction=0.01).fit(
            X_train[:100], np.arange(100) % 2
        )
    with pytest.raises(ValueError, match="only one class: 1"):
        CNNClassifier().fit(X_train, np.ones(300, dtype=int))
