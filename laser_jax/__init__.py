"""laser-jax: layer-selective rank reduction (LASER) for Hugging Face language models in JAX."""

from laser_jax.errors import LaserJaxError
from laser_jax.loading import load_model
from laser_jax.model import Model
from laser_jax.models.base import LowRank

__version__ = "0.1.0"

__all__ = ["LaserJaxError", "LowRank", "Model", "load_model", "__version__"]
