"""Widgets of the kiosk screen, one per file."""
