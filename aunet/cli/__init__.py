"""The command lines of training: ``aunet`` and ``aunet-fan`` (LightningCLI), their guards, W&B."""
