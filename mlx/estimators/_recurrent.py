"""Recurrent layers: GRU and LSTM cells unrolled over the frames of a sequence, forward and
backward through time.

Notation (a batch of ``n`` sequences of ``T`` frames of ``D`` features, ``H`` hidden units; a
row vector per sequence, so ``x_t`` is (n, D) and ``h_t`` is (n, H))::

    GRU (PyTorch's and cuDNN's form: the reset gate scales the recurrent product)
        r_t       = sigma(x_t W_r + h_{t-1} U_r + b_r)                 reset gate
        z_t       = sigma(x_t W_z + h_{t-1} U_z + b_z)                 update gate
        u_t       = h_{t-1} U_h + b_u                                  recurrent part of h~
        h~_t      = tanh(x_t W_h + b_h + r_t * u_t)                    candidate state
        h_t       = (1 - z_t) * h~_t + z_t * h_{t-1}

    LSTM
        i_t, f_t, o_t = sigma(x_t W_{i,f,o} + h_{t-1} U_{i,f,o} + b_{i,f,o})   input, forget, output
        g_t       = tanh(x_t W_g + h_{t-1} U_g + b_g)                  candidate cell
        c_t       = f_t * c_{t-1} + i_t * g_t
        h_t       = o_t * tanh(c_t)

with ``h_0 = c_0 = 0``. The gates' weights sit side by side in one matrix per input,
``W = [W_r | W_z | W_h]`` (D, 3H) and ``U`` (H, 3H) for the GRU, ``[i | f | o | g]`` (D, 4H)
and (H, 4H) for the LSTM (the three sigmoid gates first, so one call applies them). The input
projections ``a_t = x_t W + b`` of all frames are ONE product before the time loop, and their
gradients ``dW = X^T dA``, ``dX = dA W^T`` one product each after it: inside the loop only the
recurrent product ``h_{t-1} U`` (forward) and ``dP_t U^T`` (backward) remain, with ``dU =
sum_t h_{t-1}^T dP_t`` again one product after the loop.

Backward through time, from ``dh_t = dL/dh_t`` (what the layer above sends at frame t plus what
frame t + 1 sends back)::

    GRU   dh~ = dh (1 - z)          dz = dh (h_{t-1} - h~)
          da_h = dh~ (1 - h~^2)     dr = da_h u          du = da_h r
          dp_r = dr r (1 - r)       dp_z = dz z (1 - z)
          dh_{t-1} = dh z + [dp_r | dp_z | du] U^T
          (the input projection's gradient is [dp_r | dp_z | da_h]; it differs from the
          recurrent one in the candidate block only, where r_t stands between them)
    LSTM  do = dh tanh(c_t)         dc += dh o (1 - tanh(c_t)^2)
          di = dc g   df = dc c_{t-1}   dg = dc i   dc_{t-1} = dc f
          dp_{i,f,o} = d{i,f,o} s (1 - s)   dp_g = dg (1 - g^2)
          dh_{t-1} = dp U^T

Arrays are time-major inside a layer, (T, n, features), so every frame is a contiguous (n, .)
block and the products over all frames see one (T n, .) matrix. (A (T, G H, n) layout makes the
gate blocks contiguous too, but the stacked products it needs before and after the loop cost as
much as it saved: measured equal on the benchmark's GRU.) Like the layers of :mod:`._conv`, a
layer is given its parameters and gradients (dicts of arrays named as in the equations) on each
call, and keeps its caches and work arrays from batch to batch in :class:`._deep.Buffers`.

:class:`RecurrentNetwork` stacks layers and reads the last hidden state with a dense head: the
network protocol of :mod:`._deep`.
"""

import numpy as np

from ._deep import Buffers, Dense, FlatNetwork

__all__ = ["GRU", "LSTM", "RECURRENT_LAYERS", "RecurrentNetwork"]


def sigmoid(Z, out):
    """sigma(z) = (1 + tanh(z / 2)) / 2, written to ``out`` (which may be Z).

    numpy's tanh is vectorised; scipy's ``expit`` took 4-8x longer on the (64, 128) gate blocks
    of a batch, and these calls run once per frame. tanh saturates to +-1, so no input
    overflows; the absolute error stays at rounding level (as relative error it is lost only
    where sigma(z) < ~1e-8, which no gradient notices).
    """
    np.multiply(Z, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


class _RecurrentLayer:
    """What GRU and LSTM share: the parameter layout, initialisation, and the products over all
    frames before and after the time loop. Subclasses write the loop (``_steps_forward``,
    ``_steps_backward``) from their equations."""

    n_gates: int
    gates: tuple  # names of the gate blocks of W, U and b, in their order
    n_biased_twice: int  # leading gate blocks whose bias is PyTorch's b_ih + b_hh

    def __init__(self, input_size, hidden_size):
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.buffers = Buffers()

    def _steps_forward(self, A, Hs, p):
        raise NotImplementedError  # the subclass's time loop, from its equations

    def _steps_backward(self, dh, dH, dP, p):
        raise NotImplementedError

    def _buffer(self, name, shape):
        return self.buffers.get(name, shape, self._dtype)

    # --- parameters -------------------------------------------------------------------------

    def parameter_shapes(self):
        """``{name: shape}`` of the parameters."""
        D, H, G = self.input_size, self.hidden_size, self.n_gates
        return {"W": (D, G * H), "U": (H, G * H), "b": (G * H,)}

    penalised = ("W", "U")  # under the L2 penalty: the weight matrices, not the biases

    def initialise(self, p, rng):
        """Draw the parameters ``p`` (a dict of arrays) in place, in PyTorch's scheme: every
        weight from U(-k, k), k = 1 / sqrt(H), and so each of PyTorch's two bias vectors (input
        side and recurrent side); where both enter one pre-activation, ours is their sum.

        Glorot-uniform W with orthogonal blocks of U and zero biases (Keras' scheme) learnt the
        benchmark's contours more slowly (test accuracy after 40 epochs 0.435-0.441 against
        0.455-0.504 over 3 seeds; PyTorch itself 0.455-0.477) and equally well the audio
        contours; the same distribution as PyTorch's also makes the benchmark like for like.
        Drawn in float64 from a NumPy ``RandomState``: a seed gives the same layer in float32
        and float64."""
        k = 1 / np.sqrt(self.hidden_size)
        for name, shape in self.parameter_shapes().items():
            p[name][...] = rng.uniform(-k, k, shape)
        both = self.n_biased_twice * self.hidden_size
        p["b"][:both] += rng.uniform(-k, k, both)

    # --- forward and backward -----------------------------------------------------------------

    def forward(self, X, p):
        """Run the cell over the frames of X (T, n, D); return every hidden state, (T, n, H).

        The returned array and what :meth:`backward` needs stay in the layer's buffers until
        the next call: copy the result to keep it.
        """
        T, n, D = X.shape
        self._dtype = X.dtype
        self._X = X
        GH = self.n_gates * self.hidden_size
        A = self._buffer("A", (T, n, GH))  # a_t = x_t W + b, every frame in one product
        np.matmul(X.reshape(T * n, D), p["W"], out=A.reshape(T * n, GH))
        A += p["b"]
        Hs = self._buffer("H", (T + 1, n, self.hidden_size))  # h_0 .. h_T
        Hs[0] = 0
        self._Hs = Hs
        self._steps_forward(A, Hs, p)
        return Hs[1:]

    def backward(self, p, g, dh_last=None, dH=None, *, input_grad=True):
        """Backpropagate through time from the last :meth:`forward`; fill ``g`` (overwriting).

        Parameters
        ----------
        p, g : dict of ndarray
            The parameters and their gradients, named as in :meth:`parameter_shapes`.
        dh_last : ndarray of shape (n, H) or None
            dL/dh_T, the gradient at the last frame (many-to-one: all a head sends).
        dH : ndarray of shape (T, n, H) or None
            dL/dh_t for every frame, from a layer stacked on this one.
        input_grad : bool
            Whether to return dL/dX (not needed for the bottom layer when training).

        Returns
        -------
        dX : ndarray of shape (T, n, D) or None
            In a buffer of the layer, valid until the next call.
        """
        X, Hs = self._X, self._Hs
        T, n, D = X.shape
        H, GH = self.hidden_size, self.n_gates * self.hidden_size
        dh = self._buffer("dh", (n, H))  # dL/dh_t carried back through the loop
        if dh_last is None:
            dh[...] = 0
        else:
            dh[...] = dh_last
        dP = self._buffer("dP", (T, n, GH))  # dL/d(h_{t-1} U) per frame
        self._steps_backward(dh, dH, dP, p)
        dP2 = dP.reshape(T * n, GH)
        np.matmul(Hs[:-1].reshape(T * n, H).T, dP2, out=g["U"])
        ones = self._buffer("ones", (T * n,))  # column sums as a product: 3x np.sum(axis=0)
        ones.fill(1)
        dA2 = self._input_gradient(dP, g, ones).reshape(T * n, GH)
        np.matmul(X.reshape(T * n, D).T, dA2, out=g["W"])
        np.matmul(ones, dA2, out=g["b"])
        if not input_grad:
            return None
        dX = self._buffer("dX", (T, n, D))
        np.matmul(dA2, p["W"].T, out=dX.reshape(T * n, D))
        return dX

    def _transposed(self, U):
        """U^T as a contiguous copy: the frame loop's (n, G H) x (G H, H) product ran 1.5x
        faster on it than on the transposed view (BLAS's small-matrix paths)."""
        U_T = self._buffer("U_T", U.shape[::-1])
        np.copyto(U_T, U.T)
        return U_T

    def _input_gradient(self, dP, g, ones):
        """dL/dA, the gradient of the input projections, from the recurrent one (the same array
        unless the cell puts something between them); may reuse dP's memory."""
        return dP


class GRU(_RecurrentLayer):
    """Gated recurrent unit (Cho et al., 2014) in PyTorch's form, unrolled over frames.

    Parameters: ``W`` (D, 3H), ``U`` (H, 3H), ``b`` (3H,) with gate blocks ``[r | z | h~]``,
    and ``b_u`` (H,), the bias of the recurrent part of the candidate (inside the reset gate,
    so not redundant with ``b_h``). PyTorch's ``weight_ih`` is ``W^T``, ``weight_hh`` is
    ``U^T``; ``b`` is ``b_ih + b_hh`` in the r and z blocks and ``b_ih`` in the candidate's,
    whose ``b_hh`` is ``b_u``.
    """

    n_gates = 3
    gates = ("r", "z", "h_tilde")
    n_biased_twice = 2  # PyTorch's b_hh of r and z adds to b_ih; the candidate's is b_u

    def parameter_shapes(self):
        return {**super().parameter_shapes(), "b_u": (self.hidden_size,)}

    def _steps_forward(self, A, Hs, p):
        T, n, _ = A.shape
        H = self.hidden_size
        U, b_u = p["U"], p["b_u"]
        RZ = self._buffer("RZ", (T, n, 2 * H))  # [r_t | z_t]
        P = self._buffer("P", (T, n, 3 * H))  # h_{t-1} U, then u_t in the last block
        H_tilde = self._buffer("H_tilde", (T, n, H))
        for t in range(T):
            h_prev, a, p_t, rz, h_tilde = Hs[t], A[t], P[t], RZ[t], H_tilde[t]
            np.matmul(h_prev, U, out=p_t)
            u = p_t[:, 2 * H :]
            u += b_u
            np.add(a[:, : 2 * H], p_t[:, : 2 * H], out=rz)
            sigmoid(rz, out=rz)
            r, z = rz[:, :H], rz[:, H:]
            np.multiply(r, u, out=h_tilde)
            h_tilde += a[:, 2 * H :]
            np.tanh(h_tilde, out=h_tilde)
            h = Hs[t + 1]  # (1 - z) h~ + z h_{t-1} = h~ + z (h_{t-1} - h~)
            np.subtract(h_prev, h_tilde, out=h)
            h *= z
            h += h_tilde
        self._RZ, self._P, self._H_tilde = RZ, P, H_tilde

    def _steps_backward(self, dh, dH, dP, p):
        T, n, _ = dP.shape
        H = self.hidden_size
        U_T = self._transposed(p["U"])
        Hs, RZ, P, H_tilde = self._Hs, self._RZ, self._P, self._H_tilde
        dA_h = self._buffer("dA_h", (T, n, H))  # dL/da_h, kept for the input side
        dh_z = self._buffer("dh_z", (n, H))
        tmp = self._buffer("tmp", (n, 2 * H))
        for t in range(T - 1, -1, -1):
            if dH is not None:
                dh += dH[t]
            h_prev, rz, h_tilde, u = Hs[t], RZ[t], H_tilde[t], P[t][:, 2 * H :]
            r, z = rz[:, :H], rz[:, H:]
            dp = dP[t]
            dr, dz, du, da_h = dp[:, :H], dp[:, H : 2 * H], dp[:, 2 * H :], dA_h[t]
            np.subtract(h_prev, h_tilde, out=dz)
            dz *= dh
            np.multiply(dh, z, out=dh_z)
            np.subtract(dh, dh_z, out=da_h)  # dh~ = dh (1 - z)
            s = tmp[:, :H]
            np.multiply(h_tilde, h_tilde, out=s)
            np.subtract(1, s, out=s)
            da_h *= s  # through the tanh
            np.multiply(da_h, u, out=dr)
            np.multiply(da_h, r, out=du)
            np.subtract(1, rz, out=tmp)  # through the sigmoids: dp = d(gate) s (1 - s)
            dp_rz = dp[:, : 2 * H]
            dp_rz *= rz
            dp_rz *= tmp
            np.matmul(dp, U_T, out=dh)
            dh += dh_z
        self._dA_h = dA_h

    def _input_gradient(self, dP, g, ones):
        # b_u's gradient is the candidate block of dP, before dA_h takes its place.
        H = self.hidden_size
        np.matmul(ones, dP.reshape(-1, 3 * H)[:, 2 * H :], out=g["b_u"])
        dP[:, :, 2 * H :] = self._dA_h
        return dP


class LSTM(_RecurrentLayer):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997; forget gate of Gers et al., 2000),
    unrolled over frames.

    Parameters: ``W`` (D, 4H), ``U`` (H, 4H), ``b`` (4H,) with gate blocks ``[i | f | o | g]``
    (PyTorch's ``weight_ih`` and ``weight_hh`` are ``W^T`` and ``U^T`` with the blocks in the
    order ``[i | f | g | o]``, and ``b = b_ih + b_hh``).
    """

    n_gates = 4
    gates = ("i", "f", "o", "g")
    n_biased_twice = 4

    def _steps_forward(self, A, Hs, p):
        T, n, _ = A.shape
        H = self.hidden_size
        U = p["U"]
        Gates = self._buffer("Gates", (T, n, 4 * H))  # [i | f | o | g] per frame
        C = self._buffer("C", (T + 1, n, H))  # c_0 .. c_T
        tanh_C = self._buffer("tanh_C", (T, n, H))
        ig = self._buffer("ig", (n, H))
        C[0] = 0
        for t in range(T):
            gates = Gates[t]
            np.matmul(Hs[t], U, out=gates)
            gates += A[t]
            sig = gates[:, : 3 * H]
            sigmoid(sig, out=sig)
            i, f, o, g = (gates[:, k * H : (k + 1) * H] for k in range(4))
            np.tanh(g, out=g)
            c = C[t + 1]
            np.multiply(f, C[t], out=c)
            np.multiply(i, g, out=ig)
            c += ig
            np.tanh(c, out=tanh_C[t])
            np.multiply(o, tanh_C[t], out=Hs[t + 1])
        self._Gates, self._C, self._tanh_C = Gates, C, tanh_C

    def _steps_backward(self, dh, dH, dP, p):
        T, n, _ = dP.shape
        H = self.hidden_size
        U_T = self._transposed(p["U"])
        Gates, C, tanh_C = self._Gates, self._C, self._tanh_C
        dc = self._buffer("dc", (n, H))  # dL/dc_t carried back through the loop
        dc[...] = 0
        tmp = self._buffer("tmp", (n, 3 * H))
        for t in range(T - 1, -1, -1):
            if dH is not None:
                dh += dH[t]
            gates, dp, tanh_c = Gates[t], dP[t], tanh_C[t]
            i, f, o, g = (gates[:, k * H : (k + 1) * H] for k in range(4))
            di, df, do, dg = (dp[:, k * H : (k + 1) * H] for k in range(4))
            np.multiply(dh, tanh_c, out=do)
            s = tmp[:, :H]  # dh o (1 - tanh(c)^2), through h = o tanh(c)
            np.multiply(tanh_c, tanh_c, out=s)
            np.subtract(1, s, out=s)
            s *= o
            s *= dh
            dc += s
            np.multiply(dc, g, out=di)
            np.multiply(dc, C[t], out=df)
            np.multiply(dc, i, out=dg)
            dc *= f
            sig, dp_sig = gates[:, : 3 * H], dp[:, : 3 * H]
            np.subtract(1, sig, out=tmp)  # through the sigmoids
            dp_sig *= sig
            dp_sig *= tmp
            s = tmp[:, :H]  # through the tanh
            np.multiply(g, g, out=s)
            np.subtract(1, s, out=s)
            dg *= s
            np.matmul(dp, U_T, out=dh)


RECURRENT_LAYERS = {"gru": GRU, "lstm": LSTM}


class RecurrentNetwork(FlatNetwork):
    """Stacked recurrent layers read many-to-one: a dense head on the last hidden state.

    ``X`` (n, C, T) in PyTorch's Conv1d layout (a row of ``LogMelSpectrogram`` output reshaped
    to (n_mels, n_frames)) is read as a sequence of T frames of C features::

        H^(0) = X^T (T, n, C),   H^(l) = cell_l(H^(l-1)) (T, n, hidden_size),   l = 1 .. L
        Z = h^(L)_T V + c      (the logits; V (hidden_size, n_outputs), c (n_outputs,))

    The parameters of layer l are named ``"l.W"``, ``"l.U"``, ... (see :class:`GRU`,
    :class:`LSTM`), the head's ``"head.V"`` and ``"head.c"``.

    Parameters
    ----------
    input_shape : tuple (channels, steps)
    n_outputs : int
    cell : {'gru', 'lstm'}
    hidden_size : int
    num_layers : int
    dtype : numpy floating dtype
    """

    def __init__(self, input_shape, n_outputs, *, cell, hidden_size, num_layers, dtype):
        self.config = dict(
            input_shape=tuple(input_shape),
            n_outputs=n_outputs,
            cell=cell,
            hidden_size=hidden_size,
            num_layers=num_layers,
            dtype=dtype,
        )
        channels, _ = input_shape
        sizes = [channels] + [hidden_size] * num_layers
        self.layers = [
            RECURRENT_LAYERS[cell](d, h) for d, h in zip(sizes[:-1], sizes[1:], strict=True)
        ]
        layout = [
            (f"{k}.{name}", shape, name in layer.penalised)
            for k, layer in enumerate(self.layers)
            for name, shape in layer.parameter_shapes().items()
        ]
        layout += [("head.V", (hidden_size, n_outputs), True), ("head.c", (n_outputs,), False)]
        super().__init__(layout, dtype)
        self._p = [self._views(self.p, k) for k in range(num_layers)]
        self._g = [self._views(self.g, k) for k in range(num_layers)]
        self.head = Dense()
        self.buffers = Buffers()

    def _views(self, named, k):
        prefix = f"{k}."
        return {name[len(prefix) :]: a for name, a in named.items() if name.startswith(prefix)}

    def initialise(self, rng):
        """Layer by layer (see :meth:`GRU.initialise`), then the head as PyTorch's ``Linear``:
        V and c from U(-k, k), k = 1 / sqrt(hidden_size)."""
        for layer, p in zip(self.layers, self._p, strict=True):
            layer.initialise(p, rng)
        k = 1 / np.sqrt(self.config["hidden_size"])
        for name in ("head.V", "head.c"):
            self.p[name][...] = rng.uniform(-k, k, self.p[name].shape)
        return self

    def forward(self, X, training=False, rng=None):
        n, C, T = X.shape
        H = self.buffers.get("X", (T, n, C), X.dtype)
        np.copyto(H, X.transpose(2, 0, 1))  # time-major: each frame a contiguous (n, C) block
        for layer, p in zip(self.layers, self._p, strict=True):
            H = layer.forward(H, p)
        return self.head.forward(H[-1], self.p["head.V"], self.p["head.c"])

    def backward(self, dZ):
        dh_last = self.head.backward(dZ, self.p["head.V"], self.g["head.V"], self.g["head.c"])
        dH = None
        for k in range(len(self.layers) - 1, -1, -1):
            dH = self.layers[k].backward(self._p[k], self._g[k], dh_last, dH, input_grad=k > 0)
            dh_last = None
