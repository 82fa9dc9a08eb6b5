"""Shared test settings: tolerances that depend on the backend."""

import jax

ON_CPU = jax.default_backend() == "cpu"
# float32 products: exact float32 on CPU; GPUs multiply in TF32 by default (about 1e-3 relative per product),
# so cross-route comparisons of whole models get a looser tolerance there (as equinox's tests do).
MODEL_RTOL = 1e-4 if ON_CPU else 3e-3
