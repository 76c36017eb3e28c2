"""Fill ``{{name}}`` placeholders in Asterisk config templates.

Asterisk's own syntax uses ``${...}`` and ``$[...]``, so the templates use a
marker Asterisk never does. A placeholder without a value is an error, and so
is a value with a line break, which would start a new setting in the file it
lands in (values from the config are checked for ``;`` and the like when the
config is validated).
"""

from __future__ import annotations

# The service renders the include files an operator installs with the same function.
from ivr_auth.asterisk_config import MULTILINE_SUFFIX, placeholders, render

__all__ = ["MULTILINE_SUFFIX", "placeholders", "render"]
