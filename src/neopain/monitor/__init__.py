"""Monitoring: frame → face → prediction → smoothed state (``pipeline.Assessor``), still images
and manifests (``images``), video files → timeline, episodes and report (``video``), and
explanation overlays (``overlays``)."""
