"""Reporting: result tables and pictures made from finished runs (top layer).

`table` renders every table of the project (Markdown and LaTeX) from one description;
`results_tables` builds the paper's tables (mean ± standard error over seeds) from run directories;
`study_tables` the tables of the demo and the comparison studies from their runs' metrics;
`table1` the paper's Table 1 from its rows' metrics (collected by reproduction/table1.py);
`evaluation_plots` draws reliability diagrams and metrics under shift; `hyperparameter_plots` the
λ-distribution trajectories of a hyper-batch / stn run. Imports `evaluation/`, `maths/` and `runs/`
and reads workdirs; nothing here trains.
"""
