"""Inference: the AU predictor over videos and images, ``aunet-predict``, exports, the CSV."""
