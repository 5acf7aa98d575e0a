"""aunet: facial Action Unit intensity estimation by heatmap regression.

Implements Ntinou et al., "A Transfer Learning approach to Heatmap Regression for Action Unit
intensity estimation", and its predecessor (Sanchez-Lozano et al., BMVC 2018).
"""

import os

# albumentations asks PyPI for a newer release on import; a training job must never wait on the
# network (clusters often have none), so switch the check off before anything imports it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
