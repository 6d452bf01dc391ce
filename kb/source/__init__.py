"""Reading a knowledge-base source folder: tables, records, manuals and the mapping."""
