#!/usr/bin/env python3
"""Checks the service's wheel as an operator gets it (``make check-wheel``, run by CI).

1. Builds the wheel with ``pip wheel --no-deps`` (pip is in every venv; the
   ``build`` package would be one more tool for the same PEP 517 build) from a
   copy of the checkout's pyproject.toml, README.md and src/ in a temporary
   directory: setuptools builds in the tree it is given, leaving build/ and
   src/*.egg-info behind and reusing an old build/lib, whose stale modules
   would go into the wheel.
2. Reads the wheel's file list: it must hold every file of src/ivr_auth and
   nothing else (the prompts and their index, the Asterisk and dialplan
   templates, the SQL, openapi.json, the dashboard's static files), only the
   ``ivr-auth`` command, and no dev-kit code: no ivr_auth_devkit, no SIPp,
   pcap, softphone, stack, bench or demo module, and no module importing the
   dev kit.
3. Installs it into a fresh venv in that temporary directory, its
   dependencies from the package index through pip's ordinary client (pip's
   own configuration and cache apply).
4. From that directory, in the venv, with no PYTHONPATH: imports every module
   of ``ivr_auth`` (pkgutil.walk_packages) and fails if a module of the dev kit
   was imported or is importable, if the checkout is on sys.path, if a module
   came from elsewhere than the venv's site-packages, or if ``ivr_auth.data``
   finds its prompts and templates anywhere else; then runs ``ivr-auth --help``
   and ``ivr-auth config``.

``--keep DIR`` builds and installs in DIR (outside the checkout) and keeps
it: the e2e test tests/e2e/test_installed_wheel.py runs the installed
``ivr-auth`` from DIR/venv. Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "ivr_auth"
SOURCE = ROOT / "src" / PACKAGE
COMMANDS = {"ivr-auth"}
# Names of the development kit's modules and folders; none may ship.
DEVKIT_NAMES = {
    "ivr_auth_devkit",
    "sipp",
    "sipp_load",
    "sipp_scenarios",
    "sipp-scenarios",
    "rtp_pcap",
    "softphone",
    "stack",
    "bench",
    "demo",
}
LANGUAGES = ("ja", "en")
# What must ship whatever the checkout holds, beside every prompt index.json lists.
REQUIRED = (
    "data/prompts/index.json",
    "data/prompts/manifest.yaml",
    "data/prompts/silence/300ms.wav",
    "data/prompts/silence/1000ms.wav",
    "data/asterisk/pjsip.conf",
    "data/asterisk/ari.conf",
    "data/dialplan/extensions.conf",
    "data/systemd/ivr-auth-controller.service",
    "data/include/ivr-auth-pjsip.conf",
    "data/include/ivr-auth-extensions.conf",
    "api/openapi.json",
    "dashboard/static/index.html",
    "store/migrations/0001_initial.sql",
    "py.typed",
)
SKIPPED = {"__pycache__"}

# Runs in the fresh venv: argv[1] is the checkout, argv[2] the languages
# (comma-separated). Prints a JSON report.
PROBE = r"""
import importlib, importlib.resources, importlib.util, json, os, pkgutil, sys, sysconfig
from pathlib import Path

checkout = Path(sys.argv[1]).resolve()
languages = sys.argv[2].split(",")
site = Path(sysconfig.get_paths()["purelib"]).resolve()
problems = []

def inside(path, parent):
    return Path(path).resolve().is_relative_to(parent)

import ivr_auth
names = ["ivr_auth"]
def failed(name):
    problems.append(f"import {name}: {sys.exc_info()[0].__name__}: {sys.exc_info()[1]}")
for info in pkgutil.walk_packages(ivr_auth.__path__, "ivr_auth.", onerror=failed):
    if info.name.rpartition(".")[2] == "__main__":
        continue
    try:
        importlib.import_module(info.name)
    except Exception:
        failed(info.name)
    names.append(info.name)

devkit = sorted(m for m in sys.modules if m.partition(".")[0] == "ivr_auth_devkit")
if devkit:
    problems.append(f"the dev kit was imported: {', '.join(devkit)}")
if importlib.util.find_spec("ivr_auth_devkit") is not None:
    problems.append("ivr_auth_devkit is importable in the fresh venv")
for entry in sys.path:
    if inside(entry or os.getcwd(), checkout):
        problems.append(f"the checkout is on sys.path: {entry!r}")
for name in names:
    where = getattr(sys.modules.get(name), "__file__", None)
    if where is None or not inside(where, site / "ivr_auth"):
        problems.append(f"{name} comes from {where}, not {site / 'ivr_auth'}")

from ivr_auth import data, prompts
dirs = {"prompts": data.PROMPTS_DIR, "asterisk": data.ASTERISK_DIR, "dialplan": data.DIALPLAN_DIR}
for label, found in dirs.items():
    if not inside(found, site / "ivr_auth" / "data"):
        problems.append(f"ivr_auth.data finds its {label} in {found}, not in {site}")
library = prompts.Library()
found = 0
for language in languages:
    listed = sorted(library.names(language))
    if not listed:
        problems.append(f"no {language} prompts in {library.shipped_dir}")
    for name in listed:
        path = library.path(name, language)
        if not Path(f"{path}.wav").is_file() or not inside(path.parent, data.PROMPTS_DIR):
            problems.append(f"prompt {language}/{name} is not at {path}.wav")
        found += 1
templates = (data.ASTERISK_DIR / "pjsip.conf", data.ASTERISK_DIR / "ari.conf", data.DIALPLAN_DIR / "extensions.conf")
for template in templates:
    if not template.is_file():
        problems.append(f"no template {template}")
for package, name in (("ivr_auth.api", "openapi.json"), ("ivr_auth.dashboard", "static/index.html")):
    if not importlib.resources.files(package).joinpath(name).is_file():
        problems.append(f"{package} has no {name}")

print(json.dumps({
    "problems": problems,
    "modules": len(names),
    "prompts": found,
    "prompts_dir": str(data.PROMPTS_DIR),
    "asterisk_dir": str(data.ASTERISK_DIR),
    "dialplan_dir": str(data.DIALPLAN_DIR),
}))
"""


class Failed(Exception):
    pass


def step(label: str, started: float) -> None:
    print(f"check-wheel: {label} ({time.monotonic() - started:.1f}s)", flush=True)


def clean_environment() -> dict[str, str]:
    """This process's environment without what would point Python or the
    service elsewhere (another venv, the checkout, a config or a database)."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("IVR_AUTH_")}


def run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, env=clean_environment(), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise Failed(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


def source_files() -> set[str]:
    """The files of src/ivr_auth, relative to it, as the wheel names them."""
    found = set()
    for path in SOURCE.rglob("*"):
        relative = path.relative_to(SOURCE)
        if path.is_file() and not SKIPPED & set(relative.parts) and path.suffix not in (".pyc", ".pyo"):
            found.add(relative.as_posix())
    return found


def build(work: Path) -> Path:
    tree = work / "source"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", *(p.name for p in ROOT.glob("LICENSE*"))):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(SOURCE, tree / "src" / PACKAGE, ignore=shutil.ignore_patterns(*SKIPPED, "*.pyc", "*.egg-info"))
    dist = work / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", str(dist), str(tree)], work, 600)
    (wheel,) = dist.glob("*.whl")
    return wheel


def devkit_imports(name: str, text: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(text, name)):
        if isinstance(node, ast.Import):
            modules = [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [(node.lineno, node.module)]
        else:
            continue
        found += [f"{name}:{line} imports {m}" for line, m in modules if m.partition(".")[0] == "ivr_auth_devkit"]
    return found


def check_contents(wheel: Path) -> list[str]:
    """Problems with the wheel's files; prints what it holds."""
    problems = []
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        texts = {n: archive.read(n).decode("utf-8") for n in names if n.endswith(".py")}
        dist_info = next((n.partition("/")[0] for n in names if n.partition("/")[0].endswith(".dist-info")), "")
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode() if dist_info else ""
        empty = [n for n in names if n.endswith(".wav") and archive.getinfo(n).file_size == 0]
    tops = {n.partition("/")[0] for n in names}
    if tops != {PACKAGE, dist_info}:
        others = sorted(tops - {PACKAGE, dist_info})
        problems.append(f"top-level entries other than {PACKAGE}/ and its dist-info: {others}")
    shipped = {n.removeprefix(f"{PACKAGE}/") for n in names if n.startswith(f"{PACKAGE}/")}
    missing = sorted(source_files() - shipped)
    if missing:
        problems.append(f"files of src/{PACKAGE} missing from the wheel (package-data?): {', '.join(missing)}")
    extra = sorted(shipped - source_files())
    if extra:
        problems.append(f"files in the wheel that src/{PACKAGE} does not hold: {', '.join(extra)}")
    absent = [n for n in REQUIRED if n not in shipped]
    if absent:
        problems.append(f"the wheel lacks {', '.join(absent)}")
    if empty:
        problems.append(f"empty prompt files: {', '.join(empty)}")
    index_name = f"{PACKAGE}/data/prompts/index.json"
    with zipfile.ZipFile(wheel) as archive:
        index = json.loads(archive.read(index_name)) if index_name in names else {}
    for language in LANGUAGES:
        listed = index.get(language, {})
        if not listed:
            problems.append(f"index.json lists no {language} prompts")
        lacking = sorted(p for p in listed if f"data/prompts/{language}/{p}.wav" not in shipped)
        if lacking:
            problems.append(f"{language} prompts listed but not shipped: {', '.join(lacking)}")
    for name in names:
        parts = PurePosixPath(name).parts
        if {PurePosixPath(p).stem for p in parts} & DEVKIT_NAMES or {p for p in parts} & DEVKIT_NAMES:
            problems.append(f"dev-kit code in the wheel: {name}")
    for name, text in texts.items():
        problems += devkit_imports(name, text)
    commands = set()
    section = ""
    for line in entry_points.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif "=" in line and section == "[console_scripts]":
            commands.add(line.partition("=")[0].strip())
    if commands != COMMANDS:
        problems.append(f"console scripts {sorted(commands)}, expected {sorted(COMMANDS)}")
    data_files = [n for n in shipped if not n.endswith(".py")]
    print(
        f"check-wheel: {wheel.name}, {wheel.stat().st_size / 1e6:.1f} MB, {len(names)} files: "
        f"{len(texts)} modules, {sum(n.endswith('.wav') for n in data_files)} WAVs "
        f"({', '.join(f'{lang} {len(index.get(lang, {}))}' for lang in LANGUAGES)}, silence), "
        f"{sum(n.startswith('data/asterisk/') for n in data_files)} Asterisk templates, "
        f"{sum(n.startswith('data/dialplan/') for n in data_files)} dialplan, "
        f"{sum(n.endswith('.sql') for n in data_files)} SQL, "
        f"{sum(n.startswith('dashboard/static/') for n in data_files)} dashboard static, openapi.json",
        flush=True,
    )
    return problems


def install(work: Path, wheel: Path) -> Path:
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], work, 120)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], work, 900)
    return venv


def check_installed(work: Path, venv: Path) -> list[str]:
    done = run([str(venv / "bin" / "python"), "-c", PROBE, str(ROOT), ",".join(LANGUAGES)], work, 300)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    problems: list[str] = report["problems"]
    print(
        f"check-wheel: imported {report['modules']} modules of the installed {PACKAGE}; "
        f"{report['prompts']} prompts in {report['prompts_dir']}; templates in {report['asterisk_dir']} "
        f"and {report['dialplan_dir']}",
        flush=True,
    )
    command = venv / "bin" / "ivr-auth"
    run([str(command), "--help"], work, 60)
    shown = json.loads(run([str(command), "config"], work, 60).stdout)
    if not isinstance(shown, dict) or "ari" not in shown:
        problems.append(f"`ivr-auth config` printed no configuration: {shown!r}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="build and install in DIR (kept; empty, outside the checkout)"
    )
    args = parser.parse_args()
    if args.keep is not None:
        work = args.keep.resolve()
        if work.is_relative_to(ROOT):
            parser.error(f"--keep {work}: must be outside the checkout")
        work.mkdir(parents=True, exist_ok=True)
        if any(work.iterdir()):
            parser.error(f"--keep {work}: must be empty")
    else:
        work = Path(tempfile.mkdtemp(prefix="ivr-auth-wheel-"))
    started = time.monotonic()
    try:
        wheel = build(work)
        step(f"built {wheel.name}", started)
        problems = check_contents(wheel)
        if not problems:
            venv = install(work, wheel)
            step(f"installed into a fresh venv in {work}", started)
            problems = check_installed(work, venv)
            step("checked the installed package", started)
    except (Failed, subprocess.TimeoutExpired, ValueError, KeyError, OSError) as exc:
        problems = [str(exc)]
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    for problem in problems:
        print(f"check-wheel: FAIL {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"check-wheel: ok ({time.monotonic() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
