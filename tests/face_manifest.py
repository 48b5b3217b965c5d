"""A tiny labelled manifest of real face photographs for rule-based models (NFCS).

Not a neonatal dataset: scikit-image's astronaut photograph (an adult), its face enlarged ×2
as in ``tests/scoring/conftest.py``, once as it is (``nopain``) and once with the NFCS actions
put on it by ``face_warps.pain_face`` (``pain``), each also mirrored. Face boxes and keypoints
come from the face mesh found on each image.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pandas as pd
import skimage.data

import face_warps
from neopain.data.manifest import format_box, format_keypoints
from neopain.faces.landmarks import FaceMesh, keypoints_from_landmarks


def astronaut_face():
    """The astronaut's face region enlarged ×2 (BGR uint8, about 200 px across the face)."""
    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    return cv2.resize(photo[20:260, 110:350], None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)


def write_face_manifest(root: Path) -> Path:
    """Write the 4 images and their manifest.csv under ``root``; returns the manifest."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    face = astronaut_face()
    rows = []
    with FaceMesh(refine=True) as mesh:
        for mirrored in (False, True):
            neutral = cv2.flip(face, 1) if mirrored else face
            pained = face_warps.pain_face(neutral, mesh.landmarks(neutral))
            for label, image in (("nopain", neutral), ("pain", pained)):
                points = mesh.landmarks(image)[:, :2]
                name = f"images/{label}{'_mirrored' if mirrored else ''}.png"
                cv2.imwrite(str(root / name), image)
                rows.append({"image": name, "subject": "astronaut", "label": label,
                             "face_box": format_box([*points.min(axis=0), *points.max(axis=0)]),
                             "keypoints": format_keypoints(keypoints_from_landmarks(points))})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"
