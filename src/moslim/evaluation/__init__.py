"""Evaluation: controllability metrics, Pareto fronts, judges, plots and the report."""
