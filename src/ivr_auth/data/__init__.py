"""The runtime data that ships inside the package, found with
``importlib.resources`` wherever the package is installed, never through a
repository checkout:

- ``prompts/``: the call prompts (``<lang>/<name>.wav``, 8 kHz mono), their
  index and the text they speak (``manifest.yaml``, rendered by
  ``make prompts``);
- ``asterisk/`` and ``dialplan/``: the Asterisk configuration templates
  (``{{name}}`` placeholders) of the embedded stack's own files;
- ``include/``: the templates of the files ``ivr-auth asterisk-config``
  writes for an operator's Asterisk, which the embedded stack includes too.
- ``systemd/``: the service's units and its example environment file
  (``{{name}}`` placeholders), which ``ivr-auth systemd-units`` writes out.

Asterisk plays prompts by absolute path, so these must be files on disk:
pip installs a wheel unzipped, and an editable install points here.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def _directory(name: str) -> Path:
    found = importlib.resources.files(__name__) / name
    path = Path(str(found))
    if not path.is_dir():
        raise FileNotFoundError(f"the package's data directory {name!r} is not on disk ({found})")
    return path


PROMPTS_DIR = _directory("prompts")
ASTERISK_DIR = _directory("asterisk")
DIALPLAN_DIR = _directory("dialplan")
SYSTEMD_DIR = _directory("systemd")
INCLUDE_DIR = _directory("include")
