"""Recurrent networks on sequences of frames with a scikit-learn face: a GRU or LSTM read
many-to-one, a classifier and a regressor.

The cells and the network live in :mod:`._recurrent`; the epochs, early stopping, clipping and
the classifier / regressor faces in :mod:`._deep`.
"""

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from . import _nn
from ._deep import (
    BASE_ATTRIBUTES_DOC,
    BASE_PARAMETERS_DOC,
    DeepClassifierMixin,
    DeepRegressorMixin,
    _BaseDeepNet,
)
from ._recurrent import RECURRENT_LAYERS, RecurrentNetwork
from ._threads import single_threaded_blas

__all__ = ["RNNClassifier", "RNNRegressor"]

_RNN_PARAMETERS_DOC = """    cell : {'gru', 'lstm'}, default='gru'
        The recurrent cell: a gated recurrent unit (3 gate blocks, PyTorch's form) or a long
        short-term memory (4 gate blocks and a cell state).

    hidden_size : int, default=64
        Units of the hidden state h_t of every recurrent layer.

    num_layers : int, default=1
        Recurrent layers stacked on one another: the second reads the first one's hidden state
        at every frame. Only the last layer's last state reaches the output layer."""

_RNN_NOTES = """    A row of X is the C-order flattening of an ``input_shape = (channels, steps)`` array, as
    ``mlx.audio.LogMelSpectrogram`` outputs with ``(n_mels, n_frames)``: the network reads it as
    a sequence of ``steps`` frames, each a vector of ``channels`` features (one mel spectrum).
    Without ``input_shape`` a row of ``n_features`` columns is a sequence of ``n_features``
    frames of one feature. With :math:`h_0 = 0`, the GRU computes at every frame

    .. math::
        r_t &= \\sigma(x_t W_r + h_{t-1} U_r + b_r), \\quad
        z_t = \\sigma(x_t W_z + h_{t-1} U_z + b_z), \\\\
        \\tilde h_t &= \\tanh(x_t W_h + b_h + r_t \\odot (h_{t-1} U_h + b_u)), \\\\
        h_t &= (1 - z_t) \\odot \\tilde h_t + z_t \\odot h_{t-1},

    the LSTM

    .. math::
        (i_t, f_t, o_t) &= \\sigma(x_t W_{ifo} + h_{t-1} U_{ifo} + b_{ifo}), \\quad
        g_t = \\tanh(x_t W_g + h_{t-1} U_g + b_g), \\\\
        c_t &= f_t \\odot c_{t-1} + i_t \\odot g_t, \\quad h_t = o_t \\odot \\tanh(c_t),

    and the output layer reads the last state: :math:`z = h_T V + c`. The gates are what let
    a gradient cross many frames (the update gate z, the forget gate f near 1 keep h or c
    almost unchanged), where a plain tanh recurrence multiplies it by a Jacobian at every
    frame and it vanishes or explodes. ``clip_norm`` bounds the step when it explodes anyway.
    Training is backpropagation through time over whole sequences; the input projections of
    all frames are one matrix product, only the recurrent product runs frame by frame.

    The weights and biases start from :math:`U(-1/\\sqrt{H}, 1/\\sqrt{H})`, as PyTorch's
    ``nn.GRU`` / ``nn.LSTM`` and ``nn.Linear`` draw them. Scale the inputs (e.g.
    ``StandardScaler`` in a pipeline): the gates saturate on large values."""


class _BaseRNN(_BaseDeepNet):
    """Recurrent architecture over the training base: a stack of cells and a dense head."""

    _parameter_constraints: dict = {
        **_BaseDeepNet._parameter_constraints,
        "cell": [StrOptions(set(RECURRENT_LAYERS))],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "num_layers": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        cell="gru",
        *,
        hidden_size=64,
        num_layers=1,
        solver="adam",
        learning_rate_init=1e-3,
        alpha=1e-4,
        batch_size=64,
        max_iter=200,
        shuffle=True,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        clip_norm=None,
        input_shape=None,
        dtype=np.float32,
        random_state=None,
        verbose=False,
    ):
        super().__init__(
            solver=solver,
            learning_rate_init=learning_rate_init,
            alpha=alpha,
            batch_size=batch_size,
            max_iter=max_iter,
            shuffle=shuffle,
            tol=tol,
            n_iter_no_change=n_iter_no_change,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            clip_norm=clip_norm,
            input_shape=input_shape,
            dtype=dtype,
            random_state=random_state,
            verbose=verbose,
        )
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers

    def _build_network(self, input_shape, n_outputs, dtype):
        return RecurrentNetwork(
            input_shape,
            n_outputs,
            cell=self.cell,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dtype=dtype,
        )

    def _blas_threads(self):
        # The products inside the time loop are (batch, H) x (H, G H): small enough that a
        # second BLAS thread slows them (2-10x on the benchmark's GRU of 64 units).
        gate_width = RECURRENT_LAYERS[self.cell].n_gates * self.hidden_size
        if self.batch_size * self.hidden_size * gate_width >= _nn.SINGLE_THREAD_PRODUCT:
            return super()._blas_threads()
        return single_threaded_blas()


class RNNClassifier(DeepClassifierMixin, _BaseRNN):
    __doc__ = f"""Recurrent neural network classifier (GRU or LSTM) on sequences of frames.

    One or more recurrent layers run over the frames of a row; a dense output layer reads the
    last hidden state (many-to-one): one sigmoid output and the binary cross-entropy for two
    classes, a softmax and the cross-entropy for more.

    Parameters
    ----------
{_RNN_PARAMETERS_DOC}

{BASE_PARAMETERS_DOC}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.

{BASE_ATTRIBUTES_DOC}

    See Also
    --------
    RNNRegressor : The same network with an identity output and the squared error.
    CNNClassifier : Convolutions over the frames: local patterns anywhere in time.
    MLPClassifier : A perceptron on fixed features, e.g. statistics pooled over time.

    Notes
    -----
{_RNN_NOTES}

    Examples
    --------
    Whether a bump comes early or late in a sequence of 12 steps: the same values in another
    order, which no statistic pooled over time tells apart.

    >>> import numpy as np
    >>> from mlx.estimators import RNNClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 300)
    >>> X = rng.normal(scale=0.3, size=(300, 12))
    >>> X[np.arange(300), np.where(y == 1, 8, 3)] += 2.0
    >>> clf = RNNClassifier(hidden_size=16, learning_rate_init=0.01, max_iter=20, random_state=0)
    >>> clf.fit(X, y).score(X, y) > 0.95
    True
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """


class RNNRegressor(DeepRegressorMixin, _BaseRNN):
    __doc__ = f"""Recurrent neural network regressor (GRU or LSTM) on sequences of frames.

    One or more recurrent layers run over the frames of a row; a dense identity output layer
    (one unit per target) reads the last hidden state (many-to-one); the loss is the halved
    mean squared error.

    Parameters
    ----------
{_RNN_PARAMETERS_DOC}

{BASE_PARAMETERS_DOC}

    Attributes
    ----------
{BASE_ATTRIBUTES_DOC}

    See Also
    --------
    RNNClassifier : The same network with a sigmoid or softmax output.

    Notes
    -----
{_RNN_NOTES}

    The targets are not scaled: scale them (``TransformedTargetRegressor``) when they are far
    from unit size. Predictions are returned in float64.

    Examples
    --------
    The value at a step that the first value of the row points to (a lookup in time):

    >>> import numpy as np
    >>> from mlx.estimators import RNNRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, size=(600, 8))
    >>> y = X[:, 1] * (X[:, 0] > 0) + X[:, 2] * (X[:, 0] <= 0)
    >>> reg = RNNRegressor(hidden_size=32, learning_rate_init=0.01, max_iter=60, random_state=0)
    >>> reg.fit(X, y).score(X, y) > 0.9
    True
    """
