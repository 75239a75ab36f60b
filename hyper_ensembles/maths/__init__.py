"""Pure ensemble maths on arrays: predictive, metrics (with calibration bins), temperature scaling,
greedy selection, log-uniform distributions, losses. Imports nothing else from the package."""
