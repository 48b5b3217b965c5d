"""The edge agent (``neopain agent``): a camera at the bed, assessed on the device, results sent
to the ward server over the device protocol (docs/agent.md).

``capture`` opens a camera, a stream or a video file; ``outbox`` keeps every record until the
server has answered for it; ``client`` speaks the protocol over the standard library's HTTP;
``clock`` measures the offset to the server's clock; ``runner.Agent`` ties them together.
Nothing here imports torch, FastAPI or the server's modules: the device installs none of them.
"""
