"""Alarm inputs (serial, OPC UA, MQTT, HTTP) and the one store-first intake they hand over to.

`message` holds the typed `AlarmIn` every input posts, `intake` stores it first (one SQLite
transaction, synchronous=FULL), applies the duplicate window and queues its answer for the one
background worker; `mqtt` and `opcua` are the network inputs, `runner` starts every configured
input in one process (`shifu intake`).
"""
