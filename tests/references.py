"""Independent references the tests hold aunet's statistics against."""

import numpy as np
import pandas as pd
import pingouin


def pingouin_icc31(preds: np.ndarray, target: np.ndarray) -> float:
    """Shrout-Fleiss ICC(3,1), which pingouin >= 0.6 names ICC(C,1), of two raters."""
    n = len(target)
    table = pd.DataFrame(
        {
            "frame": np.repeat(np.arange(n), 2),
            "rater": np.tile(["model", "truth"], n),
            "score": np.stack([preds, target], axis=1).reshape(-1),
        }
    )
    result = pingouin.intraclass_corr(table, targets="frame", raters="rater", ratings="score")
    return float(result.set_index("Type").loc["ICC(C,1)", "ICC"])
