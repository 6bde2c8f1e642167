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
block and the products over all frames see one (T n, .) matrix. A layer takes its parameters
and gradients as named views into the flat buffers of the network that owns it.
"""

import numpy as np
from scipy.special import expit

__all__ = ["GRU", "LSTM", "RECURRENT_LAYERS", "Scratch"]


class Scratch:
    """Named work arrays reused from batch to batch.

    A request for a shape returns a view of the first elements of a flat array kept under that
    name (reallocated only when it must grow), so every batch size and sequence length gets a
    contiguous array and the steady state allocates nothing. Not pickled.
    """

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self._flat = {}

    def __call__(self, name, shape):
        size = int(np.prod(shape))
        flat = self._flat.get(name)
        if flat is None or flat.size < size:
            flat = self._flat[name] = np.empty(size, dtype=self.dtype)
        return flat[:size].reshape(shape)

    def ones(self, n):
        """A vector of n ones (column sums as one BLAS product ``1^T M``)."""
        ones = self._flat.get("ones")
        if ones is None or ones.size < n:
            ones = self._flat["ones"] = np.ones(n, dtype=self.dtype)
        return ones[:n]


def orthogonal(n, rng):
    """A random (n, n) orthogonal matrix: Q of the QR decomposition of a Gaussian matrix, its
    columns' signs fixed by R's diagonal so that Q is uniformly (Haar) distributed."""
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


class _RecurrentLayer:
    """What GRU and LSTM share: the parameter layout, initialisation, and the products over all
    frames before and after the time loop. Subclasses write the loop (``_steps_forward``,
    ``_steps_backward``) from their equations."""

    n_gates: int
    gates: tuple  # names of the gate blocks of W, U and b, in their order

    def __init__(self, input_size, hidden_size, *, name="", scratch=None, dtype=np.float64):
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.name = name
        self.scratch = Scratch(dtype) if scratch is None else scratch
        self.params = self.grads = None

    # --- parameters -------------------------------------------------------------------------

    def parameter_shapes(self):
        """``{name: shape}`` of the parameters, weights first (the L2 penalty's slice)."""
        D, H, G = self.input_size, self.hidden_size, self.n_gates
        return {"W": (D, G * H), "U": (H, G * H), "b": (G * H,)}

    def weight_names(self):
        """Parameters under the L2 penalty: the weight matrices, not the biases."""
        return ("W", "U")

    def bind(self, params, grads):
        """Use the ``{name: view}`` dicts ``params`` and ``grads`` (views into the network's
        flat buffers, shaped as :meth:`parameter_shapes`)."""
        self.params, self.grads = params, grads
        return self

    def initialise(self, rng):
        """W Glorot-uniform over the gates' full width (fan_in D, fan_out G H), each gate's
        block of U orthogonal (a recurrent map that neither shrinks nor grows h at the start,
        against vanishing and exploding gradients), biases 0 (the LSTM's forget gate: 1).
        Drawn in float64 from a NumPy ``RandomState``: a seed gives the same layer in float32
        and float64."""
        D, H, G = self.input_size, self.hidden_size, self.n_gates
        p = self.params
        r = np.sqrt(6.0 / (D + G * H))
        p["W"][...] = rng.uniform(-r, r, (D, G * H))
        p["U"][...] = np.hstack([orthogonal(H, rng) for _ in range(G)])
        for name, shape in self.parameter_shapes().items():
            if name not in ("W", "U"):
                p[name][...] = np.zeros(shape)
        return self

    # --- forward and backward -----------------------------------------------------------------

    def forward(self, X):
        """Run the cell over the frames of X (T, n, D); return every hidden state, (T, n, H).

        The returned array and what backward needs stay in the layer's scratch buffers until
        the next call: copy the result to keep it.
        """
        T, n, D = X.shape
        self._X = X
        GH = self.n_gates * self.hidden_size
        A = self.scratch(self.name + "A", (T, n, GH))  # a_t = x_t W + b, every frame at once
        np.matmul(X.reshape(T * n, D), self.params["W"], out=A.reshape(T * n, GH))
        A += self.params["b"]
        Hs = self.scratch(self.name + "H", (T + 1, n, self.hidden_size))  # h_0 .. h_T
        Hs[0] = 0
        self._steps_forward(A, Hs)
        return Hs[1:]

    def backward(self, dh_last=None, dH=None, *, need_dX=True):
        """Backpropagate through time from the last forward pass.

        Parameters
        ----------
        dh_last : ndarray of shape (n, H) or None
            dL/dh_T, the gradient at the last frame (many-to-one: all a head sends).
        dH : ndarray of shape (T, n, H) or None
            dL/dh_t for every frame, from a layer stacked on this one.
        need_dX : bool
            Whether to return dL/dX (not needed for the bottom layer when training).

        Returns
        -------
        dX : ndarray of shape (T, n, D) or None
            In a scratch buffer, valid until the next call.

        Fills ``grads`` (overwriting): the gradients of the parameters.
        """
        X, Hs = self._X, self._Hs
        T, n, D = X.shape
        H, GH = self.hidden_size, self.n_gates * self.hidden_size
        dh = self.scratch(self.name + "dh", (n, H))  # dL/dh_t carried back through the loop
        if dh_last is None:
            dh[...] = 0
        else:
            dh[...] = dh_last
        dP = self.scratch(self.name + "dP", (T, n, GH))  # dL/d(h_{t-1} U) per frame
        self._steps_backward(dh, dH, dP)
        g, ones = self.grads, self.scratch.ones(T * n)
        dP2 = dP.reshape(T * n, GH)
        np.matmul(Hs[:-1].reshape(T * n, H).T, dP2, out=g["U"])
        dA2 = self._input_gradient(dP, ones).reshape(T * n, GH)
        np.matmul(X.reshape(T * n, D).T, dA2, out=g["W"])
        np.matmul(ones, dA2, out=g["b"])
        if not need_dX:
            return None
        dX = self.scratch(self.name + "dX", (T, n, D))
        np.matmul(dA2, self.params["W"].T, out=dX.reshape(T * n, D))
        return dX

    def _input_gradient(self, dP, ones):
        """dL/dA, the gradient of the input projections, from the recurrent one (the same array
        unless the cell puts something between them); may reuse dP's memory."""
        return dP


class GRU(_RecurrentLayer):
    """Gated recurrent unit (Cho et al., 2014) in PyTorch's form, unrolled over frames.

    Parameters: ``W`` (D, 3H), ``U`` (H, 3H), ``b`` (3H,) with gate blocks ``[r | z | h~]``,
    and ``b_u`` (H,), the bias of the recurrent part of the candidate (inside the reset gate,
    so not redundant with ``b_h``). PyTorch's ``b_ih + b_hh`` maps to ``b`` except in the
    candidate block, where ``b_ih`` goes to ``b`` and ``b_hh`` to ``b_u``.
    """

    n_gates = 3
    gates = ("r", "z", "h_tilde")

    def parameter_shapes(self):
        return {**super().parameter_shapes(), "b_u": (self.hidden_size,)}

    def _steps_forward(self, A, Hs):
        T, n, _ = A.shape
        H = self.hidden_size
        U, b_u = self.params["U"], self.params["b_u"]
        RZ = self.scratch(self.name + "RZ", (T, n, 2 * H))  # [r_t | z_t]
        P = self.scratch(self.name + "P", (T, n, 3 * H))  # h_{t-1} U, then u_t in the last block
        H_tilde = self.scratch(self.name + "H_tilde", (T, n, H))
        for t in range(T):
            h_prev, a, p, rz, h_tilde = Hs[t], A[t], P[t], RZ[t], H_tilde[t]
            np.matmul(h_prev, U, out=p)
            u = p[:, 2 * H :]
            u += b_u
            np.add(a[:, : 2 * H], p[:, : 2 * H], out=rz)
            expit(rz, out=rz)
            r, z = rz[:, :H], rz[:, H:]
            np.multiply(r, u, out=h_tilde)
            h_tilde += a[:, 2 * H :]
            np.tanh(h_tilde, out=h_tilde)
            h = Hs[t + 1]  # (1 - z) h~ + z h_{t-1} = h~ + z (h_{t-1} - h~)
            np.subtract(h_prev, h_tilde, out=h)
            h *= z
            h += h_tilde
        self._Hs, self._RZ, self._P, self._H_tilde = Hs, RZ, P, H_tilde

    def _steps_backward(self, dh, dH, dP):
        T, n, _ = dP.shape
        H = self.hidden_size
        U_T = self.params["U"].T
        Hs, RZ, P, H_tilde = self._Hs, self._RZ, self._P, self._H_tilde
        dA_h = self.scratch(self.name + "dA_h", (T, n, H))  # dL/da_h, kept for the input side
        dh_z = self.scratch(self.name + "dh_z", (n, H))
        tmp = self.scratch(self.name + "tmp", (n, 2 * H))
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

    def _input_gradient(self, dP, ones):
        # b_u's gradient is the candidate block of dP, before dA_h takes its place.
        H = self.hidden_size
        np.matmul(ones, dP.reshape(-1, 3 * H)[:, 2 * H :], out=self.grads["b_u"])
        dP[:, :, 2 * H :] = self._dA_h
        return dP


class LSTM(_RecurrentLayer):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997; forget gate of Gers et al., 2000),
    unrolled over frames.

    Parameters: ``W`` (D, 4H), ``U`` (H, 4H), ``b`` (4H,) with gate blocks ``[i | f | o | g]``
    (PyTorch orders them ``[i | f | g | o]``, with ``b = b_ih + b_hh``). The forget gate's bias
    starts at 1, so the cell remembers by default (Jozefowicz et al., 2015).
    """

    n_gates = 4
    gates = ("i", "f", "o", "g")

    def initialise(self, rng):
        super().initialise(rng)
        H = self.hidden_size
        self.params["b"][H : 2 * H] = 1.0
        return self

    def _steps_forward(self, A, Hs):
        T, n, _ = A.shape
        H = self.hidden_size
        U = self.params["U"]
        Gates = self.scratch(self.name + "Gates", (T, n, 4 * H))  # [i | f | o | g] per frame
        C = self.scratch(self.name + "C", (T + 1, n, H))  # c_0 .. c_T
        tanh_C = self.scratch(self.name + "tanh_C", (T, n, H))
        ig = self.scratch(self.name + "ig", (n, H))
        C[0] = 0
        for t in range(T):
            gates = Gates[t]
            np.matmul(Hs[t], U, out=gates)
            gates += A[t]
            sig = gates[:, : 3 * H]
            expit(sig, out=sig)
            i, f, o, g = (gates[:, k * H : (k + 1) * H] for k in range(4))
            np.tanh(g, out=g)
            c = C[t + 1]
            np.multiply(f, C[t], out=c)
            np.multiply(i, g, out=ig)
            c += ig
            np.tanh(c, out=tanh_C[t])
            np.multiply(o, tanh_C[t], out=Hs[t + 1])
        self._Hs, self._Gates, self._C, self._tanh_C = Hs, Gates, C, tanh_C

    def _steps_backward(self, dh, dH, dP):
        T, n, _ = dP.shape
        H = self.hidden_size
        U_T = self.params["U"].T
        Gates, C, tanh_C = self._Gates, self._C, self._tanh_C
        dc = self.scratch(self.name + "dc", (n, H))  # dL/dc_t carried back through the loop
        dc[...] = 0
        tmp = self.scratch(self.name + "tmp", (n, 3 * H))
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
