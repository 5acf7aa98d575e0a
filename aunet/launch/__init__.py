"""The experiment launcher behind the make targets: ``python -m aunet.launch``."""
