import jax

# Implicit rank promotion hides shape bugs; every test runs with it as an error.
jax.config.update("jax_numpy_rank_promotion", "raise")
