"""``neopain agent`` on its own: the same command and root options as in ``cli.app``, without
importing the other commands (pandas, matplotlib, the training stack), so that a bed device
starts assessing within its 2 s (docs/agent.md)."""

from __future__ import annotations

import typer

from neopain.cli import agent
from neopain.cli.root import HELP, Commands, root_options

app = typer.Typer(cls=Commands, name="neopain", help=HELP, no_args_is_help=True,
                  pretty_exceptions_enable=False, rich_markup_mode="rich")
app.command("agent")(agent.agent)
app.callback()(root_options)
