"""Tables that several test modules build (importable because pytest puts tests/ on the path)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def two_source_table(*, unifesp: int = 27, icope: int = 30, seed: int = 7) -> pd.DataFrame:
    """A manifest table of two sources; 3-19 images per subject; per-subject pain shares from
    all-nopain to all-pain, so that splitting subjects without stratifying visibly loses class
    balance. The defaults make the 57-subject table of the lsso acceptance test."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(unifesp + icope):
        source = "UNIFESP" if i < unifesp else "iCOPE"
        subject = f"{source[0]}{i:02d}"
        share = rng.choice([0.0, 0.2, 0.5, 0.8, 1.0])
        for j in range(int(rng.integers(3, 20))):
            label = "pain" if rng.random() < share else "nopain"
            rows.append({"image": f"{source}/{subject}/{j}.jpg", "subject": subject,
                         "label": label, "source": source})
    return pd.DataFrame(rows)
