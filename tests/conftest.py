import os

# The tests are dominated by XLA compile time on CPU; the backend's optimisation passes
# buy nothing for these tiny shapes. Must be set before jax initialises its backend.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402

# Implicit rank promotion hides shape bugs; every test runs with it as an error.
jax.config.update("jax_numpy_rank_promotion", "raise")
