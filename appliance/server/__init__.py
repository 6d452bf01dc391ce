"""The engine over HTTP (`shifu serve`): the FastAPI app and the wire format of its events."""
