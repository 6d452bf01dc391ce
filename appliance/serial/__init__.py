"""Serial lines: machines print alarms, serial scanners print codes.

`parsers` turns a text line into an alarm, `framing` turns bytes into bounded lines,
`reader` owns one port (reconnecting with backoff), `service` stores every alarm first
and then prepares its answer in the background, `alarm_store` holds the extra tables,
`status` is the JSON file the kiosk's status bar reads.
"""
