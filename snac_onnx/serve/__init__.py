"""``snac-onnx serve``: the HTTP and WebSocket server (FastAPI) in front of a stream pool, and its Ray Serve
deployment. Needs the ``[serve]`` extra."""
