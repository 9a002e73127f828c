"""The build backend of `pip install ./python`: maturin's, after building
the `dblaunch` executable, which the wheel installs on PATH (wheel data,
`scripts`), beside the module.

Why not maturin alone: it builds one kind of artifact per wheel (here the
PyO3 module), and a Python entry point calling the executable would put an
interpreter start in front of every `dblaunch exec`. The executable is the
root package's release build (`cargo build --release --bin dblaunch`, with
the root build.rs's static link), copied as it is.

DBLAUNCH_CARGO_PROFILE names another cargo profile for both: scripts/test-python
uses `dev`, which `cargo test` has mostly built already (the optimised build
takes minutes on two cores; the tests check behaviour, not speed). A wheel can only be built from the
repository (the executable's source is the repository root); there is no
source distribution.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

import maturin

HERE = Path(__file__).resolve().parent.parent  # python/
ROOT = HERE.parent
SCRIPTS = HERE / "build" / "wheel-data" / "scripts"
# Where cargo puts a profile's output, where it is not the profile's name.
_PROFILE_DIRS = {"dev": "debug", "test": "debug", "bench": "release"}


def _profile() -> Optional[str]:
    return os.environ.get("DBLAUNCH_CARGO_PROFILE") or None


def _executable() -> None:
    """Builds the `dblaunch` executable and puts it where the wheel's data
    is taken from."""
    if not (ROOT / "Cargo.toml").is_file() or not (ROOT / "build.rs").is_file():
        raise RuntimeError(
            f"{ROOT} is not the dblaunch repository: the wheel is built from a checkout "
            "(pip install ./python at the repository root)"
        )
    profile = _profile()
    build = ["cargo", "build", "--locked", "--bin", "dblaunch", "--package", "dblaunch"]
    build += ["--profile", profile] if profile else ["--release"]
    print("Running `{}`".format(" ".join(build)), flush=True)
    subprocess.run(build, cwd=ROOT, check=True, stdout=sys.stderr)
    metadata = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    target = Path(json.loads(metadata.stdout)["target_directory"])
    built = target / _PROFILE_DIRS.get(profile or "release", profile or "release") / "dblaunch"
    shutil.rmtree(SCRIPTS.parent, ignore_errors=True)
    SCRIPTS.mkdir(parents=True)
    shutil.copy2(built, SCRIPTS / "dblaunch")


def _maturin_args() -> None:
    profile = _profile()
    if profile:
        args = os.environ.get("MATURIN_PEP517_ARGS", "")
        os.environ["MATURIN_PEP517_ARGS"] = f"{args} --profile {profile}".strip()


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    _executable()
    _maturin_args()
    name: str = maturin.build_wheel(wheel_directory, config_settings, metadata_directory)
    return name


def build_editable(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    _executable()
    _maturin_args()
    name: str = maturin.build_editable(wheel_directory, config_settings, metadata_directory)
    return name


def build_sdist(sdist_directory: str, config_settings: Optional[Mapping[str, Any]] = None) -> str:
    raise RuntimeError(
        "dblaunch has no source distribution: the wheel ships the dblaunch executable, built from "
        "the whole repository; build a wheel from a checkout (pip install ./python)"
    )


get_requires_for_build_wheel = maturin.get_requires_for_build_wheel
get_requires_for_build_editable = maturin.get_requires_for_build_editable


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Optional[Mapping[str, Any]] = None
) -> str:
    # maturin checks that the data directory exists; the executable comes
    # with the wheel.
    SCRIPTS.mkdir(parents=True, exist_ok=True)
    name: str = maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings)
    return name


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel
