"""Evaluation: cross-validation, the paper's tables, robustness, data efficiency, statistics."""
