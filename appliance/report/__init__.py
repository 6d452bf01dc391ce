"""The supervisor's report: figures over the operational database and the KB's repair records."""
