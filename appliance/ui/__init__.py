"""The operator's kiosk screen (Textual). The only package that imports `textual`.

`make_app(settings, engine)` in `appliance.ui.app` builds the app; the modules `pin`,
`scanner`, `labels` and `status` are plain Python so the CLI can use them without Textual.
"""
