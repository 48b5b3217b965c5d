"""``--backend`` and ``--address``, the one definition every batch command shares."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from neopain.data.parallel import BACKENDS, Backend
from neopain.data.ray_backend import import_ray
from neopain.errors import NeopainError

BackendOption = Annotated[str, typer.Option(
    "--backend", help=f"Where the work runs: {' or '.join(BACKENDS)} (a Ray cluster; "
                      'pip install "neopain\\[ray]"; docs/scale.md).')]
AddressOption = Annotated[Optional[str], typer.Option(
    "--address", help="--backend ray only: unset starts a Ray on this machine for the command; "
                      "auto joins the cluster this machine belongs to; ray://HOST:PORT a "
                      "remote one.")]


def backend_of(kind: str, *, address: str | None, workers: int | None = None,
               actor_threads: int = 1) -> Backend:
    """The ``Backend`` the options ask for; with Ray, ``--workers`` counts its actors and
    ``actor_threads`` is each one's threads (and CPUs).

    Raises:
        NeopainError: an unknown backend, ``--address`` without ``--backend ray``, or
            ``--backend ray`` where Ray is not installed (said before any file is written).
    """
    if kind not in BACKENDS:
        raise NeopainError(f"--backend {kind!r} is not valid; valid: {', '.join(BACKENDS)}")
    if kind != "ray":
        if address is not None:
            raise NeopainError(f"--address {address!r} applies to --backend ray only")
        return Backend()
    import_ray()
    return Backend("ray", address=address, actors=workers, actor_threads=actor_threads)
