"""Screens of the kiosk (PIN entry, technician mode), one per file."""
