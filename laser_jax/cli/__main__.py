"""``python -m laser_jax.cli``: the ``laser-jax`` command."""

import sys

from laser_jax.cli import main

sys.exit(main())
