"""A network's training files in a fold folder: ``history.csv`` and ``checkpoint.pt``.

``history.csv`` has one row per epoch (``HISTORY_COLUMNS``). ``checkpoint.pt`` is the
trainer's state after the last epoch (``training.TrainState.state_dict``: weights, optimizer,
epoch, phase, history, the callbacks' state, the RNG), so that an interrupted fold resumes
where it stopped; it is read with ``torch.load(weights_only=True)``.

Both are written whole or not at all (``data.outputs.atomic_output``); checkpoint.pt is saved
through a file handle, so that the archive inside has a fixed name and two identical states
give identical bytes (saved to a path, torch names it after the temporary file).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neopain.data.files import regular_file_problem
from neopain.data.outputs import atomic_output
from neopain.errors import NeopainError

if TYPE_CHECKING:  # torch loads when a checkpoint is saved or loaded, not with the package
    import torch

HISTORY_COLUMNS = ("epoch", "phase", "train_loss", "val_loss", "val_accuracy", "lr")
CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "lr", "phase", "frozen", "history",
                   "callbacks", "stopped", "rng")
"""What a checkpoint.pt must hold (``TrainState.state_dict``)."""


def write_history(path: str | os.PathLike[str], *,
                  rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``history.csv``: a header of ``HISTORY_COLUMNS``, then one line per row (CRLF, as
    ``csv`` writes); returns the file."""
    with atomic_output(path) as partial, partial.open("w", newline="",
                                                       encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def save_checkpoint(path: str | os.PathLike[str], *, state: Mapping[str, Any]) -> Path:
    """Write ``checkpoint.pt`` holding ``state`` (``TrainState.state_dict``); returns the file."""
    import torch

    # through a file object: torch names the archive inside after a path, here a temporary one
    with atomic_output(path) as partial, partial.open("wb") as handle:
        torch.save(state, handle)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], *,
                    map_location: str | torch.device) -> dict[str, Any]:
    """A checkpoint.pt written by ``save_checkpoint``.

    Read with torch's weights-only unpickler: tensors, numbers, strings, lists and dicts, never
    an object that runs code while it loads.

    Raises:
        NeopainError: not a regular file (a FIFO is refused, not opened), not a torch file, or
            not a checkpoint; the message says to delete it to train the fold afresh.
    """
    import torch

    advice = "delete it to train this fold from the start"
    if (problem := regular_file_problem(path, what="a checkpoint.pt file")) is not None:
        raise NeopainError(f"{path}: {problem}; {advice}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types (IndexError too) for a foreign file
        reason = str(error).strip().split("\n")[0][:200]
        raise NeopainError(f"{path}: not a neopain checkpoint.pt ({type(error).__name__}: "
                           f"{reason}); {advice}") from None
    missing = [key for key in CHECKPOINT_KEYS
               if not isinstance(state, dict) or key not in state]
    if missing:
        raise NeopainError(f"{path}: not a neopain checkpoint.pt (it lacks "
                           f"{', '.join(missing)}); {advice}")
    return state
