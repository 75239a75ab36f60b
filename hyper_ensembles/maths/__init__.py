"""Pure ensemble maths on arrays: predictive, metrics, calibration, greedy selection, log-uniform
distributions, losses. Imports nothing else from the package."""
