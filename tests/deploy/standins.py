"""Local stand-ins for the base images deploy/ names, built without any registry.

No image registry can be reached from here, so ``python:3.11-slim``, ``redis:7.2``,
``nginx:1.27`` and ``prom/prometheus:v2.53.0`` are made locally, for the tests only:

1. ``debootstrap --variant=minbase bookworm`` from the same Debian mirror this machine's
   apt uses, packed once into ``CACHE/bookworm-minbase.tar`` and ``docker import``-ed;
2. a base layer adding this machine's package index configuration (apt sources, the apt
   options that name ``Acquire::``, the keyrings those sources reference), its local CA
   certificates and a ``pip.conf`` with its remote-index settings, so ``apt-get`` and
   ``pip`` inside every build reach the same mirrors as the machine itself;
3. one small Dockerfile per image (``standins/*.Dockerfile``) installing Debian's package
   and reproducing the official image's contract (user, entrypoint, volume, tools).

Each stand-in carries the label ``org.chorus.test-standin``. A tag that already names a
real image (no such label) is left alone and used as it is. Docker's build cache and the
tarball make a second run take seconds; ``CHORUS_DEPLOY_TEST_REFRESH=1`` rebuilds all.

Error handling: debootstrap and build failures raise ``RuntimeError`` with the tool's
output; nothing half-written is left in the cache (the tarball is renamed into place).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.deploy.dockerhost import CACHE, docker

HERE = Path(__file__).resolve().parent / "standins"
LABEL = "org.chorus.test-standin"
SUITE = "bookworm"
BASE = "chorus-test/bookworm:host"
STANDINS = {  # image name in deploy/ -> the Dockerfile that stands in for it
    "python:3.11-slim": "python.Dockerfile",
    "redis:7.2": "redis.Dockerfile",
    "nginx:1.27": "nginx.Dockerfile",
    "prom/prometheus:v2.53.0": "prometheus.Dockerfile",
}
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def _run(command: list[str], timeout: float = 1200) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def _refresh() -> bool:
    return os.environ.get("CHORUS_DEPLOY_TEST_REFRESH") == "1"


# -- this machine's package configuration ------------------------------------------------------
def _source_files() -> list[Path]:
    """Enabled apt source files, as apt reads them (other suffixes are ignored by apt)."""
    files = [Path("/etc/apt/sources.list")]
    parts = Path("/etc/apt/sources.list.d")
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    return [f for f in files if f.is_file()]


def debian_mirror() -> str:
    """The first Debian archive URI of this machine's apt sources (for debootstrap)."""
    for path in _source_files():
        text = path.read_text()
        uris = re.findall(r"^URIs:\s*(\S+)", text, re.M)
        uris += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.M)
        for uri in uris:
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def _pip_settings() -> str:
    """A ``[global]`` pip.conf with this machine's remote-index settings (local paths, such
    as file:// indexes or find-links directories, do not exist inside a build)."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                            text=True, check=False).stdout
    keep = {"index-url", "extra-index-url", "trusted-host", "proxy", "timeout",
            "default-timeout", "retries"}
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        value = value.strip().strip("'\"")
        if name in keep:
            remote = [v for v in value.split() if re.match(r"https?://", v) or "url" not in name]
            if remote:
                settings[name] = " ".join(remote)
    settings["cert"] = "/etc/ssl/certs/ca-certificates.crt"  # the image's bundle has our CAs
    return "[global]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(settings.items()))


def write_host_context(target: Path) -> None:
    """Copy this machine's apt/CA/pip configuration into ``target/host`` (see step 2)."""
    apt, keyrings, ca = target / "host/apt", target / "host/keyrings", target / "host/ca"
    for folder in (apt / "sources.list.d", apt / "apt.conf.d", keyrings, ca):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".keep").touch()  # COPY of an empty folder needs one file
    for path in _source_files():
        destination = apt / path.relative_to("/etc/apt")
        shutil.copy2(path, destination)
        for ring in re.findall(r"signed-by[:=]\s*(/[^\s\]]+)", path.read_text(), re.I):
            if Path(ring).is_file() and not ring.startswith("/etc/apt/"):
                shutil.copy2(ring, keyrings / Path(ring).name)
    if Path("/etc/apt/keyrings").is_dir():
        shutil.copytree("/etc/apt/keyrings", apt / "keyrings", dirs_exist_ok=True)
    for path in sorted(Path("/etc/apt/apt.conf.d").glob("*")):
        text = path.read_text(errors="replace") if path.is_file() else ""
        if "Acquire::" in text and "Invoke" not in text:  # options, not hooks
            shutil.copy2(path, apt / "apt.conf.d" / path.name)
    for path in sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt")):
        shutil.copy2(path, ca / path.name)
    (target / "host/pip.conf").write_text(_pip_settings())


# -- the images --------------------------------------------------------------------------------
def rootfs_tarball() -> Path:
    """``CACHE/bookworm-minbase.tar``: debootstrap once, then reused."""
    tarball = CACHE / f"{SUITE}-minbase.tar"
    if tarball.is_file() and not _refresh():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        root = Path(work) / "rootfs"
        _run(["debootstrap", "--variant=minbase", SUITE, str(root), debian_mirror()])
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / junk, ignore_errors=True)
            (root / junk / "partial").mkdir(parents=True)
        (root / "etc/apt/sources.list").unlink(missing_ok=True)  # the host's come instead
        (root / "etc/hostname").unlink(missing_ok=True)
        (root / "etc/resolv.conf").unlink(missing_ok=True)  # docker provides both
        partial = Path(work) / "rootfs.tar"
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."])
        partial.replace(tarball)
    return tarball


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def _exists(image: str) -> bool:
    return docker("image", "inspect", image, check=False, timeout=60).returncode == 0


def _is_standin_or_absent(image: str) -> bool:
    found = docker("image", "inspect", image, "--format",
                   f'{{{{ index .Config.Labels "{LABEL}" }}}}', check=False, timeout=60)
    return found.returncode != 0 or found.stdout.strip() not in ("", "<no value>")


def _build(context: Path, dockerfile: str, tag: str, label: str, **args: str) -> None:
    command = ["build", "-q", "-f", str(context / dockerfile), "-t", tag, "--label",
               f"{LABEL}={label}"]
    if _refresh():
        command.append("--no-cache")
    for name, value in args.items():
        command += ["--build-arg", f"{name}={value}"]
    for name in PROXY_VARS:  # Docker passes these build args through without an ARG line
        if os.environ.get(name):
            command += ["--build-arg", f"{name}={os.environ[name]}"]
    docker(*command, str(context), timeout=1800, env={**os.environ, "DOCKER_BUILDKIT": "0"})


def build_standins() -> dict[str, str]:
    """Make every image of ``STANDINS`` available; returns image -> "stand-in" or "real"."""
    tarball = rootfs_tarball()
    rootfs = f"chorus-test/{SUITE}-rootfs:{_digest(tarball)}"
    if not _exists(rootfs) or _refresh():
        docker("import", str(tarball), rootfs, timeout=600)
    made: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as work:
        context = Path(work)
        shutil.copytree(HERE, context, dirs_exist_ok=True)
        write_host_context(context)
        _build(context, "base.Dockerfile", BASE, "base", ROOTFS=rootfs)
        for image, dockerfile in STANDINS.items():
            if not _is_standin_or_absent(image):
                made[image] = "real"
                continue
            _build(context, dockerfile, image, dockerfile, BASE=BASE)
            made[image] = "stand-in"
    return made


if __name__ == "__main__":  # python -m tests.deploy.standins: build (or check) them all
    for name, kind in build_standins().items():
        print(f"{name}: {kind}")
