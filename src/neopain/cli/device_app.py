"""``neopain agent`` on its own: the same command and root options as in ``cli.app``, without
importing the other commands (pandas, matplotlib, the training stack), so that a bed device
starts assessing within its 2 s (docs/agent.md)."""

from __future__ import annotations

from neopain.cli import agent
from neopain.cli.root import root_app

app = root_app()
app.command("agent")(agent.agent)
