"""Many runs: the variants of a comparison (experiments.py), their paired statistics
(stats.py) and its report (compare_report.py); `python -m dha_jax.compare` runs them."""
