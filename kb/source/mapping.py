"""The mapping file (`kb.toml` or `--mapping FILE`): how to read files in other layouts.

```toml
name = "Grbl"
default_lang = "en"

[[files]]
match = "error_codes_*.csv"      # glob, relative to the source folder
role = "codes"                   # codes | records | machines | manual | ignore
prefix = "error:"                # part of every code's lookup key
lang = "en"
severity = "warning"
steps_from = "description"       # derive steps from this canonical column
[files.columns]                  # canonical name = header in the file
code = "Error Code in v1.1+"
title = "Error Message in v1.0-"
description = "Error Description"
```
A vendor's YAML or JSON table (a list of records, nested keys by dotted path), whose rows
apply to several machine models and whose codes carry each model's display number:

```toml
[[files]]
match = "vendor-error-codes.yaml"
role = "codes"
root = "Errors"                  # dotted path to the list of records (optional when unambiguous)
steps_from = "description"
prefix_by_model = { "X1" = "13", "X2" = "17" }   # `XX101` is 13101 on an X1, 17101 on an X2
[files.columns]
machine_model = "printers"       # a list (or ` | ` in a CSV cell): the row applies to each model
description = "text"
title = "message.en"             # a nested key
```
Files not matched by any entry get their role from their folder (`codes/`, `records/`,
`machines/`, `manuals/`).
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kb.errors import SourceError

Role = Literal["codes", "records", "machines", "manual", "ignore"]
FOLDER_ROLES: dict[str, Role] = {
    "codes": "codes",
    "records": "records",
    "machines": "machines",
    "manuals": "manual",
}


class FileRule(BaseModel):
    """How one file (or a glob of files) is read."""

    model_config = ConfigDict(extra="forbid")

    match: str
    role: Role
    columns: dict[str, str] = Field(default_factory=dict)
    prefix: str = ""
    lang: str | None = None
    severity: str | None = None
    machine_model: str | None = None
    steps_from: str | None = None
    sheet: str | None = None
    root: str | None = None
    """YAML/JSON: the dotted path of the list of records inside the document."""
    prefix_by_model: dict[str, str] = Field(default_factory=dict)
    """Each machine model's part of a code: it replaces `placeholder` (`XX101` -> `13101` on X1)."""
    placeholder: str = "XX"
    """The model-dependent part of a code as the table writes it."""


class Mapping(BaseModel):
    """A whole mapping file."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    default_lang: str = "en"
    files: list[FileRule] = Field(default_factory=list)

    def rule_for(self, relative: str) -> FileRule | None:
        """The first rule whose glob matches the path (or its file name)."""
        name = Path(relative).name
        for rule in self.files:
            if fnmatch.fnmatch(relative, rule.match) or fnmatch.fnmatch(name, rule.match):
                return rule
        return None

    def role_for(self, relative: str) -> Role | None:
        rule = self.rule_for(relative)
        if rule is not None:
            return rule.role
        top = Path(relative).parts[0] if len(Path(relative).parts) > 1 else ""
        return FOLDER_ROLES.get(top)


def load_mapping(path: Path | None, source_dir: Path) -> Mapping:
    """The explicit mapping file, else the source's own `kb.toml`, else defaults."""
    candidate = path if path is not None else source_dir / "kb.toml"
    if path is None and not candidate.exists():
        return Mapping()
    try:
        data = tomllib.loads(candidate.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise SourceError(f"mapping file {candidate} does not exist") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SourceError(f"mapping file {candidate} is not valid TOML: {error}") from error
    try:
        return Mapping.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise SourceError(f"mapping file {candidate}: {problems}") from error
