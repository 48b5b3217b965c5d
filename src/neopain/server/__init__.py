"""The bedside monitor's web application (``create_app`` in ``server.app``): pages, JSON API and
the live WebSocket, over the records in ``neopain.store``."""
