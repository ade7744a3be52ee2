"""Test configuration, stricter than JAX's defaults (in the manner of equinox's conftest).

- ``jax_numpy_rank_promotion="raise"``: implicit rank promotion hides shape bugs.
- ``jax_numpy_dtype_promotion="strict"``: no implicit promotion between dtypes (int and
  float arrays, float32 and float64), so the library never silently computes in a dtype the
  caller did not ask for. Python scalars stay weakly typed, as in any JAX program.
- ``jax_default_matmul_precision="highest"``: on GPU and TPU JAX's default float32 matmul
  runs in TF32 or bfloat16 passes (about 1e-3 relative), which would break every float32
  tolerance of tests/tolerances.py; "highest" makes float32 matmuls float32 there too.
  On CPU it changes nothing.

No XLA optimisation-level pin: the tests run the programs that users run (see BUILD_NOTES,
"Issue 13: portable numerics"). ``.ci/run`` reruns the tests marked ``numerics`` with
``XLA_FLAGS=--xla_cpu_max_isa=SSE4_2``, so results must not hang on one CPU's vector ISA.
"""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_default_matmul_precision", "highest")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _dtype_promotion_exception(request):
    """Tests marked ``standard_dtype_promotion`` run under JAX's standard promotion.

    For third-party code that relies on implicit promotion and that a test cannot route
    around; each use says why. (optax's transforms need none: rnn_jax.train.training traces them
    under standard promotion itself.)
    """
    if request.node.get_closest_marker("standard_dtype_promotion") is None:
        yield
        return
    with jax.numpy_dtype_promotion("standard"):
        yield
