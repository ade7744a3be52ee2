"""Gradient-flow diagnostics for any cell or step function (exact in log space).

- :mod:`~rnn_jax.diagnostics.gradient_flow`: gradient norm against lag, Jacobian norms
  and spectra, gate statistics.
"""

from rnn_jax.diagnostics.gradient_flow import (by_lag, forget_gate_stats, gate_activations,
                                               grad_norms, jacobian_norms, jacobian_spectra,
                                               lag_slope)

__all__ = ["by_lag", "forget_gate_stats", "gate_activations", "grad_norms", "jacobian_norms",
           "jacobian_spectra", "lag_slope"]
