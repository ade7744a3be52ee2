"""Weight converters between rnn_jax cells and PyTorch / flax.linen, both ways.

Our layout (see :mod:`rnn_jax.cells.classic`): ``w_x: [I, G*H]``, ``w_h: [H, G*H]`` and
one bias ``b: [G*H]``, the G gate blocks stacked on the last axis in the cell's
``gates`` order; the reset-after GRU adds ``b_hn: [H]``.

How the other libraries map onto it:

- ``torch.nn.LSTM``: ``weight_ih_l{k}: [4H, I]`` and ``weight_hh_l{k}: [4H, H]`` in gate
  order (i, f, g, o), the same order as ours, stored transposed. PyTorch has two
  biases, ``bias_ih`` and ``bias_hh``, that always appear as a sum, so ``b`` is their
  sum; going back, ``bias_ih = b`` and ``bias_hh = 0`` (the same function).
- ``torch.nn.GRU``: gate order (r, z, n) as ours, and PyTorch's GRU is the reset-after
  form (``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``), so it maps onto
  ``cells.gru(H, reset_after=True)``: ``b = bias_ih + [bias_hr, bias_hz, 0]`` and
  ``b_hn = bias_hn`` (which sits inside the reset product and cannot be merged).
- ``torch.nn.RNN``: ``b = bias_ih + bias_hh``; pick ``cells.rnn(H, activation=...)`` to
  match ``nonlinearity``.
- Layers ``l{k}`` become a list, bottom first; ``bidirectional=True`` gives a pair
  ``(forward, backward)`` per layer (PyTorch's ``_reverse`` suffix is the backward one).
- flax.linen ``LSTMCell`` / ``OptimizedLSTMCell``: per-gate dense layers ``i{g}``
  (input kernel, no bias) and ``h{g}`` (recurrent kernel with the gate's bias), gates
  (i, f, g, o); flax's carry is ``(c, h)`` where ours is ``(h, c)``.
- flax.linen ``GRUCell``: ``i{r,z,n}`` kernels with biases, ``h{r,z}`` kernels without,
  ``hn`` kernel with bias: the reset-after GRU again, ``b_hn = hn.bias``.
- flax.linen ``SimpleCell``: ``i`` (kernel, bias) and ``h`` (kernel).

- ``torch.nn.LSTM(..., proj_size=P)``: ``weight_hr_l{k}: [P, H]`` becomes ``w_r: [H, P]``
  of ``cells.lstmp(H, P)``, whose ``w_h`` is ``[P, 4H]``.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np

_GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn": ("h",)}


def _check_kind(cell: str) -> tuple[str, ...]:
    if cell not in _GATES:
        raise ValueError(f"cell must be one of {sorted(_GATES)}, got {cell!r}")
    return _GATES[cell]


def _numpy(a) -> np.ndarray:
    # torch tensors (possibly requiring grad or on a GPU) without importing torch.
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _blocks(a, n: int, axis: int, name: str):
    if a.shape[axis] % n:
        raise ValueError(f"{name} has {a.shape[axis]} entries along axis {axis}, "
                         f"which is not {n} gate blocks of equal width")
    return np.split(a, n, axis=axis)


# -------------------------------------------------------------------------- PyTorch

def _torch_suffixes(num_layers: int, bidirectional: bool):
    for layer in range(num_layers):
        yield layer, [f"_l{layer}"] + ([f"_l{layer}_reverse"] if bidirectional else [])


def from_torch(state_dict: Mapping[str, Any], cell: str, *, num_layers: int = 1,
               bidirectional: bool = False):
    """Params for ``rnn_jax`` cells from a ``torch.nn.LSTM/GRU/RNN`` ``state_dict()``.

    Args:
      state_dict: the module's ``state_dict()`` (tensors or arrays), for a module built
        with ``batch_first`` either way (it does not change the weights).
      cell: ``"lstm"``, ``"gru"`` (use ``cells.gru(H, reset_after=True)``) or ``"rnn"``.
      num_layers, bidirectional: as given to the PyTorch module.

    Returns:
      A list with one entry per layer, bottom first: the params dict, or a pair
      ``(forward, backward)`` of them when ``bidirectional``. Feed a single layer to
      :func:`rnn_jax.unroll`, the list to :func:`rnn_jax.stacked`.
    """
    gates = _check_kind(cell)
    keys = set(state_dict)
    if cell != "lstm" and any(k.startswith("weight_hr") for k in keys):
        raise ValueError(f"state_dict holds weight_hr_* (proj_size > 0), which only an LSTM "
                         f"has, but cell={cell!r}")
    layers = []
    for layer, suffixes in _torch_suffixes(num_layers, bidirectional):
        directions = []
        for sfx in suffixes:
            needed = [f"weight_ih{sfx}", f"weight_hh{sfx}"]
            missing = [k for k in needed if k not in keys]
            if missing:
                raise ValueError(f"state_dict lacks {missing} (cell={cell!r}, num_layers="
                                 f"{num_layers}, bidirectional={bidirectional}); it has {sorted(keys)}")
            w_ih, w_hh = _numpy(state_dict[needed[0]]), _numpy(state_dict[needed[1]])
            n = len(gates)
            w_hr = state_dict.get(f"weight_hr{sfx}")
            hidden = w_hh.shape[0] // n
            recurrent = hidden if w_hr is None else _numpy(w_hr).shape[0]
            if (w_hh.shape != (n * hidden, recurrent) or w_ih.shape[0] != n * hidden
                    or (w_hr is not None and _numpy(w_hr).shape != (recurrent, hidden))):
                raise ValueError(
                    f"weight_hh{sfx} must be [{n}*H, H] ([{n}*H, P] with weight_hr{sfx}: [P, H]) "
                    f"and weight_ih{sfx} [{n}*H, I] for cell={cell!r}; got {w_hh.shape} and "
                    f"{w_ih.shape}")
            zeros = np.zeros((n * hidden,), w_hh.dtype)
            b_ih = _numpy(state_dict.get(f"bias_ih{sfx}", zeros))
            b_hh = _numpy(state_dict.get(f"bias_hh{sfx}", zeros))
            params = {"w_x": jnp.asarray(w_ih.T), "w_h": jnp.asarray(w_hh.T)}
            if cell == "gru":
                # b_hn multiplies with r, so only the r and z recurrent biases merge.
                merged = b_ih + np.concatenate([b_hh[:2 * hidden], np.zeros(hidden, b_hh.dtype)])
                params["b"] = jnp.asarray(merged)
                params["b_hn"] = jnp.asarray(b_hh[2 * hidden:])
            else:
                params["b"] = jnp.asarray(b_ih + b_hh)
            if w_hr is not None:
                params["w_r"] = jnp.asarray(_numpy(w_hr).T)
            directions.append(params)
        layers.append(tuple(directions) if bidirectional else directions[0])
    extra = keys - {f"{w}{s}" for _, sfxs in _torch_suffixes(num_layers, bidirectional)
                    for s in sfxs for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                            "weight_hr")}
    if extra:
        raise ValueError(f"state_dict has entries {sorted(extra)} that num_layers={num_layers}, "
                         f"bidirectional={bidirectional} does not account for")
    return layers


def to_torch(layers, cell: str, *, bidirectional: bool = False) -> dict[str, np.ndarray]:
    """The inverse of :func:`from_torch`: a dict for ``module.load_state_dict`` (as NumPy;
    wrap each with ``torch.from_numpy``). ``layers`` is one params dict or a list of them
    (pairs when ``bidirectional``). ``bias_hh`` holds only what cannot merge into
    ``bias_ih`` (the GRU's ``b_hn``), zeros elsewhere."""
    gates = _check_kind(cell)
    if isinstance(layers, Mapping) or (bidirectional and isinstance(layers, tuple)
                                       and len(layers) == 2 and isinstance(layers[0], Mapping)):
        layers = [layers]
    out = {}
    for layer, suffixes in _torch_suffixes(len(layers), bidirectional):
        directions = layers[layer] if bidirectional else (layers[layer],)
        if len(directions) != len(suffixes):
            raise ValueError(f"layer {layer} must be a pair (forward, backward) when bidirectional")
        for sfx, params in zip(suffixes, directions):
            w_x, w_h, b = (_numpy(params[k]) for k in ("w_x", "w_h", "b"))
            hidden = w_h.shape[1] // len(gates)
            recurrent = hidden if "w_r" not in params else _numpy(params["w_r"]).shape[1]
            if w_h.shape != (recurrent, len(gates) * hidden):
                raise ValueError(f"w_h must be [H, {len(gates)}*H] ([P, {len(gates)}*H] with w_r) "
                                 f"for cell={cell!r}, got {w_h.shape}")
            out[f"weight_ih{sfx}"] = np.ascontiguousarray(w_x.T)
            out[f"weight_hh{sfx}"] = np.ascontiguousarray(w_h.T)
            if "w_r" in params:
                out[f"weight_hr{sfx}"] = np.ascontiguousarray(_numpy(params["w_r"]).T)
            out[f"bias_ih{sfx}"] = b.copy()
            b_hh = np.zeros_like(b)
            if cell == "gru":
                if "b_hn" not in params:
                    raise ValueError("GRU params need b_hn: PyTorch's GRU is the reset-after form "
                                     "(cells.gru(H, reset_after=True))")
                b_hh[2 * hidden:] = _numpy(params["b_hn"])
            out[f"bias_hh{sfx}"] = b_hh
    return out


# ------------------------------------------------------------------------ flax.linen

def from_flax(variables: Mapping[str, Any], cell: str) -> dict:
    """Params for an rnn_jax cell from a flax.linen cell's variables (or their ``"params"``).

    ``cell``: ``"lstm"`` (``LSTMCell``/``OptimizedLSTMCell``), ``"gru"`` (``GRUCell``;
    use ``cells.gru(H, reset_after=True)``) or ``"rnn"`` (``SimpleCell``). Remember that
    flax's LSTM carry is ``(c, h)`` and ours ``(h, c)``.
    """
    gates = _check_kind(cell)
    fp = variables.get("params", variables)
    try:
        if cell == "rnn":
            return {"w_x": jnp.asarray(fp["i"]["kernel"]), "w_h": jnp.asarray(fp["h"]["kernel"]),
                    "b": jnp.asarray(fp["i"]["bias"])
                    + (jnp.asarray(fp["h"]["bias"]) if "bias" in fp["h"] else 0.0)}
        w_x = jnp.concatenate([jnp.asarray(fp["i" + g]["kernel"]) for g in gates], axis=1)
        w_h = jnp.concatenate([jnp.asarray(fp["h" + g]["kernel"]) for g in gates], axis=1)
        if cell == "lstm":
            return {"w_x": w_x, "w_h": w_h,
                    "b": jnp.concatenate([jnp.asarray(fp["h" + g]["bias"]) for g in gates])}
        return {"w_x": w_x, "w_h": w_h,
                "b": jnp.concatenate([jnp.asarray(fp["i" + g]["bias"]) for g in gates]),
                "b_hn": jnp.asarray(fp["hn"]["bias"])}
    except KeyError as missing:
        raise ValueError(f"flax params for cell={cell!r} lack {missing}; got the modules "
                         f"{sorted(fp)}") from None


def to_flax(params: Mapping[str, Any], cell: str) -> dict:
    """The inverse of :func:`from_flax`: ``{"params": ...}`` for the flax cell's ``apply``."""
    gates = _check_kind(cell)
    n = len(gates)
    if cell == "rnn":
        return {"params": {"i": {"kernel": params["w_x"], "bias": params["b"]},
                           "h": {"kernel": params["w_h"]}}}
    w_x = _blocks(_numpy(params["w_x"]), n, 1, "w_x")
    w_h = _blocks(_numpy(params["w_h"]), n, 1, "w_h")
    b = _blocks(_numpy(params["b"]), n, 0, "b")
    out = {}
    for g, wx, wh, bg in zip(gates, w_x, w_h, b):
        if cell == "lstm":
            out["i" + g] = {"kernel": jnp.asarray(wx)}
            out["h" + g] = {"kernel": jnp.asarray(wh), "bias": jnp.asarray(bg)}
        else:
            out["i" + g] = {"kernel": jnp.asarray(wx), "bias": jnp.asarray(bg)}
            out["h" + g] = {"kernel": jnp.asarray(wh)}
    if cell == "gru":
        if "b_hn" not in params:
            raise ValueError("GRU params need b_hn: flax's GRUCell is the reset-after form "
                             "(cells.gru(H, reset_after=True))")
        out["hn"]["bias"] = jnp.asarray(params["b_hn"])
    return {"params": out}


__all__ = ["from_flax", "from_torch", "to_flax", "to_torch"]
