"""Evaluation: any agent on the same paired episodes, with confidence intervals, plots and MLflow runs.

Write ``from eval import harness`` (not ``import eval``, which would shadow the builtin inside a module).
"""
