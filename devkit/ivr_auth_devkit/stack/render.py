"""Fill ``{{name}}`` placeholders in Asterisk config templates.

Asterisk's own syntax uses ``${...}`` and ``$[...]``, so the templates use a
marker Asterisk never does. A placeholder without a value is an error, and so
is a value with a line break, which would start a new setting in the file it
lands in (values from the config are checked for ``;`` and the like when the
config is validated).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ivr_auth import errors

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Values that are whole generated sections may span lines.
MULTILINE_SUFFIX = "_section"


def render(template: str, values: Mapping[str, str], *, source: str = "template") -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise errors.StackError(f"{source}: no value for placeholder {{{{{name}}}}}")
        value = values[name]
        if not name.endswith(MULTILINE_SUFFIX) and ("\n" in value or "\r" in value):
            raise errors.StackError(f"{source}: the value for {name} may not contain a line break")
        return value

    return _PLACEHOLDER.sub(fill, template)


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))
