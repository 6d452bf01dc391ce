"""The operator's kiosk screen (Textual). The only package that imports `textual`.

`make_app(settings, client)` in `appliance.ui.app` builds the app over an `EngineClient`
(`appliance.engine.client`: in process or HTTP); the modules `pin`,
`scanner`, `labels` and `status` are plain Python so the CLI can use them without Textual.
"""
