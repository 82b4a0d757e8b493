"""What every other part builds on, importing nothing of dha_jax above it: the registries,
config helpers, the device mesh and multi-host start, the compile cache, the optimizers
and schedules, and the command-line error handling."""
