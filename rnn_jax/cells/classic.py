"""The classic cells: Elman RNN, LSTM (and its variants), GRU, and stacking.

Parameter layout (all cells): ``w_x: [input_size, G*H]``, ``w_h: [H, G*H]``,
``b: [G*H]``, where G gate blocks of width H are stacked along the last axis in the
order given by the cell's ``gates`` field. Keeping ``w_x`` and ``w_h`` apart lets an
optimizer treat recurrent weights separately and lets diagnostics read ``w_h``
directly; see BUILD_NOTES.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnn_jax import fused
from rnn_jax import initializers as inits
from rnn_jax.cells.base import (Cell, ACTIVATIONS, bias_like, check_input, check_size,
                                dense_init, params_check, split_gates, zeros_carry)
from rnn_jax.gates import gru_gates, lstm_pointwise

# ----------------------------------------------------------------------------- RNN

def rnn(hidden_size: int, *, activation: str = "tanh",
        recurrent_init: str | inits.Initializer = "orthogonal", recurrent_scale: float = 1.0,
        kernel_init: str | inits.Initializer = inits.glorot_uniform,
        dtype=jnp.float32) -> Cell:
    """Elman RNN: ``h_t = f(x_t @ w_x + h_{t-1} @ w_h + b)``, ``y_t = h_t``.

    Args:
      hidden_size: H.
      activation: ``"tanh"`` or ``"relu"``.
      recurrent_init: ``"orthogonal"`` (default), ``"identity"`` (with ``activation="relu"``
        this is the IRNN of Le et al. 2015), ``"gaussian"`` (N(0, scale^2/H)), another
        name known to :func:`rnn_jax.initializers.resolve`, or a callable
        ``init(key, shape, dtype)``.
      recurrent_scale: multiplies the recurrent init. For orthogonal and identity it is
        exactly the spectral radius of ``w_h``; for gaussian it is the radius in the
        large-H limit.
      kernel_init: initializer for ``w_x`` (default Glorot uniform), a callable or a
        name. ``b`` starts at 0.
      dtype: parameter and carry dtype.

    Params: ``{"w_x": [I, H], "w_h": [H, H], "b": [H]}``. Carry: ``h: [*batch, H]``.
    """
    hidden_size = check_size("hidden_size", hidden_size)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    act = ACTIVATIONS[activation]
    rec_init = inits.recurrent(recurrent_init, recurrent_scale)
    kernel_init = inits.resolve(kernel_init, "kernel_init")

    def init(key, input_size):
        input_size = check_size("input_size", input_size)
        w_x, w_h = dense_init(key, input_size, hidden_size, 1, kernel_init, rec_init, dtype)
        return {"w_x": w_x, "w_h": w_h, "b": jnp.zeros((hidden_size,), dtype)}

    check_params = params_check("an Elman RNN", hidden_size, init)

    def step(params, h, x):
        check_input(x, params, h, hidden_size, check_params)
        z = x @ params["w_x"] + h @ params["w_h"]
        h = act(z + bias_like(params["b"], z))
        return h, h

    # unroll runs this whole-sequence custom VJP instead of autodiff through the scan.
    return Cell(init, zeros_carry(hidden_size, dtype, 1), step, hidden_size, ("h",),
                fast_unroll=fused.for_cell("rnn", activation=activation))


# ---------------------------------------------------------------------------- LSTM

def lstm(hidden_size: int, *, forget_bias: float = 1.0, forget_gate: bool = True,
         coupled: bool = False, peephole: bool = False, chrono_t_max: float | None = None,
         kernel_init: str | inits.Initializer = inits.glorot_uniform,
         recurrent_init: str | inits.Initializer = inits.orthogonal,
         dtype=jnp.float32) -> Cell:
    """LSTM with forget gate (Gers et al. 2000) and the common variants.

    Equations (sigma = logistic sigmoid, all products elementwise)::

        i_t = sigma(x_t W_xi + h_{t-1} W_hi + b_i [+ p_i * c_{t-1}])
        f_t = sigma(x_t W_xf + h_{t-1} W_hf + b_f [+ p_f * c_{t-1}])
        g_t = tanh (x_t W_xg + h_{t-1} W_hg + b_g)
        c_t = f_t * c_{t-1} + i_t * g_t
        o_t = sigma(x_t W_xo + h_{t-1} W_ho + b_o [+ p_o * c_t])
        h_t = o_t * tanh(c_t),   y_t = h_t

    Args:
      hidden_size: H.
      forget_bias: initial value of ``b_f`` (Gers et al. 2000; Jozefowicz et al. 2015
        recommend 1.0). Other biases start at 0.
      forget_gate: ``False`` gives the 1997 original (Hochreiter & Schmidhuber): no
        forget gate, ``f_t = 1`` (the constant error carousel).
      coupled: CIFG (Greff et al. 2017): no input gate, ``i_t = 1 - f_t``.
      peephole: peephole weights ``p_i, p_f, p_o`` (Gers & Schmidhuber 2000), init 0.
      chrono_t_max: if set, chrono-initialise the biases (Tallec & Ollivier 2018):
        ``b_f = log U[1, T_max - 1]`` and ``b_i = -b_f``; overrides ``forget_bias``.
      kernel_init, recurrent_init: initializers for ``w_x`` and each [H, H] gate
        block of ``w_h`` (default Glorot uniform and orthogonal): callables
        ``init(key, shape, dtype)`` or names such as ``"orthogonal"`` (see
        :func:`rnn_jax.initializers.resolve`).
      dtype: parameter and carry dtype.

    Gate blocks, in order: ``("i", "f", "g", "o")``; without a forget gate
    ``("i", "g", "o")``; CIFG ``("f", "g", "o")``. Params: ``w_x: [I, G*H]``,
    ``w_h: [H, G*H]``, ``b: [G*H]`` and, with peepholes, ``p_i``/``p_f``/``p_o: [H]``
    (only those of gates that exist). Carry: ``(h, c)``, each ``[*batch, H]``.
    """
    hidden_size = check_size("hidden_size", hidden_size)
    if not forget_gate and coupled:
        raise ValueError("coupled=True (CIFG) derives the input gate from the forget gate, "
                         "so it needs forget_gate=True")
    if chrono_t_max is not None and not forget_gate:
        raise ValueError("chrono_t_max initialises the forget-gate bias, so it needs forget_gate=True")
    if not forget_gate:
        gates = ("i", "g", "o")
    elif coupled:
        gates = ("f", "g", "o")
    else:
        gates = ("i", "f", "g", "o")
    n = len(gates)
    H = hidden_size
    kernel_init = inits.resolve(kernel_init, "kernel_init")
    recurrent_init = inits.resolve(recurrent_init, "recurrent_init")

    def init(key, input_size):
        input_size = check_size("input_size", input_size)
        k_w, k_b = jax.random.split(key)
        w_x, w_h = dense_init(k_w, input_size, H, n, kernel_init, recurrent_init, dtype)
        b = {g: jnp.zeros((H,), dtype) for g in gates}
        if forget_gate:
            b["f"] = jnp.full((H,), forget_bias, dtype)
        if chrono_t_max is not None:
            b_f, b_i = inits.chrono(k_b, H, dtype, t_max=chrono_t_max)
            b["f"] = b_f
            if "i" in b:
                b["i"] = b_i
        params = {"w_x": w_x, "w_h": w_h, "b": jnp.concatenate([b[g] for g in gates])}
        if peephole:
            for g in gates:
                if g != "g":
                    params["p_" + g] = jnp.zeros((H,), dtype)
        return params

    name = "a peephole LSTM" if peephole else "an LSTM"
    check_params = params_check(f"{name} (gates {', '.join(gates)})", H, init)

    def pointwise(params, carry, x):
        if not (isinstance(carry, (tuple, list)) and len(carry) == 2):
            raise TypeError(f"LSTM carry must be a pair (h, c) of [..., {H}] arrays, "
                            f"got {type(carry).__name__}")
        h, c = carry
        check_input(x, params, h, H, check_params)
        if c.shape != h.shape:
            raise ValueError(f"carry (h, c) must have equal shapes, got h {h.shape} and c {c.shape}")
        z = x @ params["w_x"] + h @ params["w_h"]
        z = dict(zip(gates, split_gates(z + bias_like(params["b"], z), n)))
        peep = {g: params["p_" + g] for g in "ifo" if "p_" + g in params}
        return lstm_pointwise(z, c, peep)

    def step(params, carry, x):
        act = pointwise(params, carry, x)
        return (act.h, act.c), act.h

    def retention(params, carry, x):
        # d c_t / d c_{t-1} along the carousel is f_t (1 without a forget gate).
        act = pointwise(params, carry, x)
        return jnp.ones_like(act.c) if act.f is None else act.f

    # None with peepholes: unroll then keeps the plain scan.
    return Cell(init, zeros_carry(H, dtype, 2), step, H, gates,
                fast_unroll=fused.for_cell("lstm", gates=gates, peephole=peephole),
                retention=retention)


# ----------------------------------------------------------------------------- GRU

def gru(hidden_size: int, *, reset_after: bool = False,
        kernel_init: inits.Initializer = inits.glorot_uniform,
        recurrent_init: inits.Initializer = inits.orthogonal,
        dtype=jnp.float32) -> Cell:
    """Gated recurrent unit of Cho et al. 2014 (arXiv 1406.1078), eqs. (5)-(8)::

        r_t = sigma(x_t W_xr + h_{t-1} W_hr + b_r)
        z_t = sigma(x_t W_xz + h_{t-1} W_hz + b_z)
        n_t = tanh (x_t W_xn + (r_t * h_{t-1}) W_hn + b_n)      # reset_after=False
        n_t = tanh (x_t W_xn + r_t * (h_{t-1} W_hn + b_hn) + b_n)  # reset_after=True
        h_t = z_t * h_{t-1} + (1 - z_t) * n_t,   y_t = h_t

    ``reset_after=True`` is the cuDNN / PyTorch / flax ``GRUCell`` form; it lets one
    matmul serve all three recurrent blocks and adds the bias ``b_hn: [H]``.

    Gate blocks, in order: ``("r", "z", "n")``. Params: ``w_x: [I, 3H]``,
    ``w_h: [H, 3H]``, ``b: [3H]`` (+ ``b_hn: [H]`` when ``reset_after``). Carry: ``h``.
    """
    hidden_size = check_size("hidden_size", hidden_size)
    H = hidden_size

    def init(key, input_size):
        input_size = check_size("input_size", input_size)
        w_x, w_h = dense_init(key, input_size, H, 3, kernel_init, recurrent_init, dtype)
        params = {"w_x": w_x, "w_h": w_h, "b": jnp.zeros((3 * H,), dtype)}
        if reset_after:
            params["b_hn"] = jnp.zeros((H,), dtype)
        return params

    check_params = params_check("a GRU" + (" (reset_after)" if reset_after else ""), H, init)

    def gates_of(params, h, x):
        check_input(x, params, h, H, check_params)
        zx = x @ params["w_x"]
        zx = zx + bias_like(params["b"], zx)
        return gru_gates(zx, h, params["w_h"], params["b_hn"] if reset_after else None)

    def step(params, h, x):
        h = gates_of(params, h, x).h
        return h, h

    def retention(params, h, x):
        # h_t = z_t h_{t-1} + (1 - z_t) n_t: the update gate keeps a fraction z_t.
        return gates_of(params, h, x).z

    return Cell(init, zeros_carry(H, dtype, 1), step, H, ("r", "z", "n"),
                fast_unroll=fused.for_cell("gru", reset_after=reset_after),
                retention=retention)


# ------------------------------------------------------------------------ stacking

def stack(cells: list[Cell] | tuple[Cell, ...], *, skip: bool = False) -> Cell:
    """Deep RNN as one cell: layer l's output is layer l+1's input at the same step.

    The carry is a tuple of the layers' carries and ``y`` is the top layer's output.
    With ``skip=True`` each layer whose input and output widths agree adds its input
    to its output (a residual connection). Use this form when the per-step carry of
    the whole stack matters (diagnostics, generation); ``rnn_jax.ops.stacked`` runs
    layer by layer instead and supports dropout between layers.

    Params: a tuple with each layer's params (layer l sees inputs of width
    ``cells[l-1].hidden_size``, the first layer the stack's input size I). Carry: a tuple
    with each layer's carry (e.g. ``[*batch, H_l]``, or ``(h, c)`` for an LSTM layer);
    ``y: [*batch, H]`` with H the last layer's ``hidden_size``.
    """
    cells = tuple(cells)
    if not cells:
        raise ValueError("cells must hold at least one Cell")

    def init(key, input_size):
        keys = jax.random.split(key, len(cells))
        sizes = [input_size] + [c.hidden_size for c in cells[:-1]]
        return tuple(c.init(k, n) for c, k, n in zip(cells, keys, sizes))

    def initial_carry(batch_shape=()):
        return tuple(c.initial_carry(batch_shape) for c in cells)

    def step(params, carry, x):
        if not (isinstance(params, (tuple, list)) and isinstance(carry, (tuple, list))):
            raise TypeError(f"params and carry of a stack must be tuples with one entry per "
                            f"layer, got {type(params).__name__} and {type(carry).__name__}")
        if len(params) != len(cells) or len(carry) != len(cells):
            raise ValueError(f"params and carry must each hold {len(cells)} layers, "
                             f"got {len(params)} and {len(carry)}")
        new = []
        for c, p, h in zip(cells, params, carry):
            h, y = c.step(p, h, x)
            new.append(h)
            x = y + x if skip and y.shape == x.shape else y
        return tuple(new), x

    return Cell(init, initial_carry, step, cells[-1].hidden_size, ())
