"""Reproductions of the paper's tables: which runs each needs, training them, writing the table.

Top layer (docs/design.md §10), beside `launching/` and `hyper_deep/`, whose launchers and pipeline
it drives; the tables themselves are rendered by `reporting/`. `table1`: Table 1 (MLP and LeNet on
Fashion-MNIST, every method, K = 3; scripts/reproduce_table1.py, docs/table1.md).
"""
