"""dha_jax: DHA (joint Data augmentation, Hyper-parameter and Architecture search) in JAX."""

__version__ = '0.1.0'
