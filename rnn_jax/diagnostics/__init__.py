"""Gradient-flow diagnostics for any cell or step function (exact in log space).

- :mod:`~rnn_jax.diagnostics.gradient_flow`: gradient norm against lag, Jacobian norms
  and spectra, gate statistics.
- :mod:`~rnn_jax.diagnostics.lyapunov`: Lyapunov exponents (QR method) and condition
  numbers of the long-term Jacobian product.
- :mod:`~rnn_jax.diagnostics.timescales`: per-unit memory timescales from a cell's
  ``retention`` (forget gate, update gate, |lambda|).
- :mod:`~rnn_jax.diagnostics.sensitivity`: the hidden state's sensitivity to the
  recurrent parameters, ``||d carry_t / d theta||``.
"""

from rnn_jax.diagnostics.gradient_flow import (by_lag, forget_gate_stats, gate_activations,
                                               grad_norms, jacobian_norms, jacobian_spectra,
                                               lag_slope)
from rnn_jax.diagnostics.lyapunov import lyapunov_exponents, top_exponent
from rnn_jax.diagnostics.sensitivity import param_sensitivity
from rnn_jax.diagnostics.timescales import (plot_timescale_histograms, retention_trace,
                                            timescales)

__all__ = ["by_lag", "forget_gate_stats", "gate_activations", "grad_norms", "jacobian_norms",
           "jacobian_spectra", "lag_slope", "lyapunov_exponents", "param_sensitivity",
           "plot_timescale_histograms", "retention_trace", "timescales", "top_exponent"]
