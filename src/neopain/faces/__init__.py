"""Faces: detectors (one family per module), dense landmarks, crops, and the detector comparison."""
