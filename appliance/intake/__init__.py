"""Alarm inputs (serial, OPC UA, MQTT, HTTP) and the one store-first intake they hand over to.

`message` holds the typed `AlarmIn` every input posts, `intake` stores it first (one SQLite
transaction, synchronous=FULL), applies the duplicate window and queues its answer for the one
background worker; `mqtt` (JSON and text payloads; Sparkplug B through `sparkplug`) and `opcua`
are the network inputs, `acknowledge` carries an operator's "fixed" back to the OPC UA server
(requested by the kiosk's client, sent by the OPC UA input), `runner` starts every configured
input in one process (`shifu intake`) and `status` is what `shifu doctor` reports of each.
"""
