"""LightningModules (AU heatmap regression, FAN pre-training) and their callbacks."""

from aunet.training.au_module import AUHeatmapModule
from aunet.training.fan_module import FANModule

__all__ = ["AUHeatmapModule", "FANModule"]
