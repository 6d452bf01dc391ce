"""The operational database: audit log, feedback, alarms, imports, answer cache."""
