"""The NFCS facial actions neopain knows: one list, each with the facial regions it moves.

The scorer measures them (``scoring.actions``), the synthetic cohort draws them
(``data.synthetic``), and a heatmap of them lights their regions (``faces.regions`` names the
regions and finds them on a face). Chin quiver is left out: a still face cannot show it
(``scoring.dan`` follows it over time).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FacialAction:
    """One NFCS action: its name, and the ``faces.regions.REGIONS`` it moves."""

    name: str
    regions: tuple[str, ...]


FACIAL_ACTIONS: tuple[FacialAction, ...] = (
    FacialAction("brow_bulge", ("brows",)),
    FacialAction("eye_squeeze", ("eyes",)),
    FacialAction("nasolabial_furrow", ("nasolabial",)),
    FacialAction("open_lips", ("mouth",)),
    FacialAction("vertical_mouth_stretch", ("mouth", "chin")),
    FacialAction("horizontal_mouth_stretch", ("mouth",)),
    FacialAction("lip_purse", ("mouth",)),
)

ACTION_NAMES: tuple[str, ...] = tuple(action.name for action in FACIAL_ACTIONS)
"""The action names in NFCS order."""

ACTION_REGIONS: dict[str, tuple[str, ...]] = {action.name: action.regions
                                              for action in FACIAL_ACTIONS}
"""Each action's regions, by name."""
