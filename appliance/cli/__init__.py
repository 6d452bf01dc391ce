"""The `shifu` command line: a thin shell over the engine and the KB."""
