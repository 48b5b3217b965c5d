"""Loading mediapipe for a detector or the face mesh stays light: its drawing helpers import
matplotlib's pyplot, whose font list costs a bed device half a second before its first
assessment; neopain never draws with them, so pyplot waits for a first use."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mediapipe")

CHECK = textwrap.dedent("""
    import json, sys
    from neopain.faces.mediapipe import import_mediapipe
    import_mediapipe("face_detection", what="the test")
    import_mediapipe("face_mesh", what="the test")
    loaded = {name: name in sys.modules for name in ("matplotlib.pyplot",
                                                     "matplotlib.font_manager")}
    from mediapipe.python.solutions import drawing_utils
    drawn_with = drawing_utils.plt.figure.__module__  # mediapipe's drawing still works
    import matplotlib.pyplot
    print(json.dumps({"loaded": loaded, "drawn_with": drawn_with,
                      "same": sys.modules["matplotlib.pyplot"] is matplotlib.pyplot,
                      "real": type(matplotlib.pyplot).__name__}))
""")


def test_mediapipe_loads_without_pyplot_and_pyplot_still_works_after(tmp_path):
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["loaded"] == {"matplotlib.pyplot": False, "matplotlib.font_manager": False}
    assert result["drawn_with"] == "matplotlib.pyplot"
    assert result["same"] and result["real"] == "module"  # the stand-in is gone afterwards
