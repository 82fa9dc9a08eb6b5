"""Shared test settings: tolerances that depend on the backend, and where the real MNIST is."""

import os
from pathlib import Path

import jax
import pytest
# submitit's first import runs logging.config.dictConfig, which closes every existing logging handler; absl's
# handler (made when flax is imported) then closes the stream it writes to unless that is the current sys.stderr.
# Inside a test pytest has swapped sys.stderr for its capture, so a first import there closed pytest's own
# capture file ("I/O operation on closed file" when tests/test_cli.py ran alone). Import it here, before flax.
import submitit  # noqa: F401

ON_CPU = jax.default_backend() == "cpu"
# float32 products: exact float32 on CPU; GPUs multiply in TF32 by default (about 1e-3 relative per product),
# so cross-route comparisons of whole models get a looser tolerance there (as equinox's tests do).
MODEL_RTOL = 1e-4 if ON_CPU else 3e-3

# Real MNIST in torchvision's layout: $COMPRESSM_DATA, else ../shared/data beside the checkout.
SHARED_DATA = Path(os.environ.get("COMPRESSM_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_mnist = pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file(),
                                 reason=f"real MNIST not found under {SHARED_DATA / 'MNIST' / 'raw'}")
