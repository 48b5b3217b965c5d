"""Frames from videos: score-dependent sampling inside observation windows.

``table`` reads the videos table (one row per observation window), ``policies`` turn a window's
face item score into frames per second, ``decode`` reads frames with their container timestamps,
and ``extract`` writes the sampled frames and their manifest.
"""

from neopain.data.video.decode import DecodedFrame, VideoReadError, decode_frames, open_video
from neopain.data.video.extract import (
    FailedVideo,
    FramesResult,
    FrameWarning,
    VideoFrames,
    extract_frames,
)
from neopain.data.video.policies import (
    POLICIES,
    DanPolicy,
    FixedPolicy,
    FlaccPolicy,
    FramePolicy,
    make_policy,
)
from neopain.data.video.table import TABLE_COLUMNS, VideoTableError, Window, read_videos_table

__all__ = [
    "POLICIES", "TABLE_COLUMNS", "DanPolicy", "DecodedFrame", "FailedVideo", "FixedPolicy",
    "FlaccPolicy", "FramePolicy", "FrameWarning", "FramesResult", "VideoFrames",
    "VideoReadError", "VideoTableError", "Window", "decode_frames", "extract_frames",
    "make_policy", "open_video", "read_videos_table",
]  # fmt: skip
