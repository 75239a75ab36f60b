"""A run's files and the user's words: workdir layout, config overrides, command-line error
reporting. No JAX."""
