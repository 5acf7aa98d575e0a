"""LightningModules (AU heatmap regression, FAN pre-training) and their callbacks."""
