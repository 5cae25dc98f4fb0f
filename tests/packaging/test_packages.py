"""The packages (packaging/build deb rpm) and the man pages (man/).

Static checks: the man pages render without a groff warning and name every flag and
setting the binary knows; lintian passes the .deb (overrides justified in
packaging/README.md); the .deb's and the .rpm's file lists are exactly the expected ones;
the .deb depends on the libpython its binary links, the .rpm (the abi3 Python package and
a launcher) on python3 >= 3.9 and on no libpython; the .rpm's scriptlets do what the
.deb's maintainer scripts do; both packages are reproducible.

The .rpm installed into a throwaway root (rpm --root): its launcher serves a WSGI app on
a CPython it was not built with (pyenv's 3.12), stops on QUIT, and a binary upgrade (USR2,
what the .rpm's upgrade scriptlet sends) stays on that Python and that package.

Under a real systemd (tests/nspawn.py, Debian 12's systemd 252): `dpkg -i` creates the
unitcorn user and enables nothing; the installed units verify clean (man pages included);
`systemctl enable --now unitcorn@demo.socket` serves a Flask app as user unitcorn, logs
access entries to the journal, reloads under load without a failed request, restarts on
a package upgrade, stops gracefully; `dpkg -P` stops it and leaves nothing behind but the
unitcorn user (Debian's practice: it may still own files elsewhere).

The .deb is built from UNITCORN_BIN (the binary under test), the .rpm's extension module
by packaging/build itself (cargo rustc, target/packaging-abi3/), into
target/packages-test/, again only when an input changed (a digest of the inputs, the
sources included). Needs root, systemd-nspawn, lintian, rpm and pyenv's CPython 3.12
(tests/run.sh installs the packages): without them these tests FAIL, they are never
skipped.
"""

import glob
import hashlib
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness import (APPS, REPO, TESTS, UNITCORN_BIN, VENV, Server, alive, base_env,
                     free_port, wait_for)
from nspawn import Container
import systemd_units as ts

pytestmark = pytest.mark.unitcorn_only("unitcorn's packages")

BUILD = REPO / "packaging" / "build"
OUT = Path(os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))) / "packages-test"
VERSION = re.search(r'^version = "(.*)"$', (REPO / "Cargo.toml").read_text(), re.M).group(1)
DEB_VERSION = re.match(r"unitcorn \(([^)]*)\)",
                       (REPO / "packaging/debian/changelog").read_text()).group(1)

# What both packages install (/usr/bin/unitcorn: the .deb's binary, the .rpm's launcher).
COMMON_FILES = {
    "/usr/bin/unitcorn",
    "/usr/lib/systemd/system/unitcorn@.service",
    "/usr/lib/systemd/system/unitcorn@.socket",
    "/usr/lib/sysusers.d/unitcorn.conf",
    "/etc/unitcorn/example.toml.sample",
    "/usr/share/man/man1/unitcorn.1.gz",
    "/usr/share/man/man5/unitcorn.toml.5.gz",
    "/usr/share/doc/unitcorn/README.md",
    "/usr/share/doc/unitcorn/examples/example-app.service",
}
DEB_FILES = COMMON_FILES | {
    "/usr/share/doc/unitcorn/copyright",
    "/usr/share/doc/unitcorn/changelog.Debian.gz",
    "/usr/share/lintian/overrides/unitcorn",
}
# The .rpm's Python package: python/unitcorn/ and the abi3 extension module.
RPM_PACKAGE_DIR = "/usr/lib/unitcorn/python"
RPM_PACKAGE = {RPM_PACKAGE_DIR + "/unitcorn/" + f
               for f in ("__init__.py", "__main__.py", "_core.abi3.so")}
RPM_FILES = COMMON_FILES | RPM_PACKAGE | {"/usr/share/licenses/unitcorn/LICENSE"}
RPM_DIRS = {"/etc/unitcorn", "/usr/share/doc/unitcorn", "/usr/share/doc/unitcorn/examples",
            "/usr/share/licenses/unitcorn", "/usr/lib/unitcorn", RPM_PACKAGE_DIR,
            RPM_PACKAGE_DIR + "/unitcorn"}
# Every requirement the .rpm may have: the shell of its scriptlets, the launcher's
# interpreter, python3 >= 3.9, and what rpm's ELF generator reads in the extension
# module (glibc's and libgcc_s' sonames, with symbol versions). No libpython, no
# Debian package name.
RPM_REQUIRES = [
    r"/bin/sh", r"/usr/bin/python3", r"python3 >= 3\.9", r"config\(unitcorn\) = .*",
    r"rpmlib\(\w+\) <= [\d.-]+", r"rtld\(GNU_HASH\)",
    r"(libc\.so\.6|libm\.so\.6|ld-linux-x86-64\.so\.2|libgcc_s\.so\.1)(\([\w.]*\))?\(64bit\)",
]
# The CPython the .rpm's launcher is run with in the tests: not the one anything was
# built with (/usr/bin/python3, 3.11).
OTHER_PYTHON = "/root/.pyenv/versions/3.12.*/bin/python3"
OLD_PYTHON = "/root/.pyenv/versions/3.8.*/bin/python3"


# packaging/build's bound: a first build of the .rpm's extension module compiles every
# crate into its own target directory (2 to 3 minutes on 2 CPUs, more beside other builds).
BUILD_TIMEOUT = 1200


def run(cmd, timeout=120, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%r exited %d\nstdout: %s\nstderr: %s" % (
            cmd, r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
    return r


def need(tool, package):
    assert shutil.which(tool), "%s is missing: apt-get install %s (tests/run.sh does)" % (
        tool, package)


# --------------------------------------------------------------------------- building

def _inputs_digest():
    """A digest of everything the packages are made of."""
    h = hashlib.sha256()
    paths = [UNITCORN_BIN, REPO / "Cargo.toml", REPO / "Cargo.lock", REPO / "build.rs",
             REPO / "README.md", REPO / "LICENSE"]
    # The .rpm's extension module is built from the sources by packaging/build.
    for d in ("packaging", "systemd", "man", "src", "python"):
        paths += sorted(p for p in (REPO / d).rglob("*") if p.is_file())
    for p in paths:
        h.update(str(p.relative_to(REPO) if p.is_relative_to(REPO) else p).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def build(out, formats=("deb", "rpm")):
    """packaging/build FORMATS of UNITCORN_BIN into out; {format: path}."""
    need("dpkg-shlibdeps", "dpkg-dev")
    need("rpmbuild", "rpm")
    env = dict(os.environ, UNITCORN_PACKAGE_BIN=str(UNITCORN_BIN), UNITCORN_PACKAGE_OUT=str(out))
    env.pop("SOURCE_DATE_EPOCH", None)
    r = run([str(BUILD)] + list(formats), env=env, timeout=BUILD_TIMEOUT)
    paths = r.stdout.split()
    return {"deb": next(p for p in paths if p.endswith(".deb")) if "deb" in formats else None,
            "rpm": next(p for p in paths if p.endswith(".rpm")) if "rpm" in formats else None}


@pytest.fixture(scope="module")
def packages():
    """The .deb and the .rpm, built again only when an input changed."""
    stamp = OUT / "inputs.sha256"
    digest = _inputs_digest()
    deb = OUT / ("unitcorn_%s_amd64.deb" % DEB_VERSION)
    rpm = OUT / ("unitcorn-%s-%s.x86_64.rpm" % (VERSION, DEB_VERSION.rsplit("-", 1)[1]))
    if not (stamp.exists() and stamp.read_text() == digest and deb.exists() and rpm.exists()):
        if OUT.exists():
            shutil.rmtree(OUT)
        t0 = time.monotonic()
        got = build(OUT)
        print("\npackaging/build deb rpm: %.1f s" % (time.monotonic() - t0))
        assert (got["deb"], got["rpm"]) == (str(deb), str(rpm)), got
        stamp.write_text(digest)
    return {"deb": deb, "rpm": rpm}


# --------------------------------------------------------------------------- man pages

MAN_PAGES = [REPO / "man" / "unitcorn.1", REPO / "man" / "unitcorn.toml.5"]


def render(page, width=80):
    env = dict(os.environ, MANWIDTH=str(width), MAN_KEEP_FORMATTING="0", LC_ALL="C.UTF-8")
    r = run(["man", "--warnings", "-l", str(page)], env=env)
    # Plain text: no overstriking, no hyphenation of flags over lines.
    return r, re.sub(r".\x08", "", r.stdout)


@pytest.mark.parametrize("page", MAN_PAGES, ids=lambda p: p.name)
def test_man_page_renders_without_warnings(page):
    need("man", "man-db")
    need("groff", "groff-base")
    r, text = render(page)
    assert r.stderr == "", r.stderr
    assert "SEE ALSO" in text and "NAME" in text
    r = run(["groff", "-man", "-ww", "-z", "-Tutf8", str(page)])
    assert r.stderr == "", r.stderr
    # whatis/apropos can parse its NAME section.
    r = run(["lexgrog", str(page)])
    name = page.name.rsplit(".", 1)[0]
    assert r.stdout.startswith('%s: "%s - ' % (page, name)), r.stdout


def test_unitcorn_1_has_every_flag_of_help_and_the_hand_written_sections():
    """The committed page against the binary under test (cargo test checks it against the
    code it is generated from): every --flag of `unitcorn --help` is in the page."""
    need("man", "man-db")
    help_text = run([str(UNITCORN_BIN), "--help"]).stdout
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]+)", help_text))
    assert len(flags) > 40, flags
    _, text = render(MAN_PAGES[0], width=200)
    missing = sorted(f for f in flags if f not in text)
    assert not missing, "in --help but not in man/unitcorn.1 (regenerate it: " \
        "UNITCORN_UPDATE_MAN=1 cargo test --release man::): %s" % missing
    for section in ("SIGNALS", "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO"):
        assert re.search(r"^%s$" % section, text, re.M), section
    for var in ("LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC",
                "JOURNAL_STREAM", "UNITCORN_CMD_ARGS", "GUNICORN_CMD_ARGS"):
        assert re.search(r"^ {7}.*\b%s\b" % var, text, re.M), var
    for signal in ("QUIT", "TERM", "HUP", "TTIN", "TTOU", "USR1", "USR2", "WINCH"):
        assert re.search(r"^ {7}.*\b%s\b" % signal, text, re.M), signal
    assert "unitcorn %s" % VERSION in text


def _toml5_entries():
    """{setting: its paragraph} of unitcorn.toml(5)."""
    _, text = render(MAN_PAGES[1], width=200)
    body = text.split("\nSETTINGS\n", 1)[1].split("\nEXAMPLES\n", 1)[0]
    entries = {}
    for m in re.finditer(r"^ {7}([a-z_]+) = [a-z ]+\n(.*?)(?=^ {7}[a-z_]+ = |^ {3}\S|\Z)",
                         body, re.M | re.S):
        entries[m.group(1)] = m.group(2)
    return entries


def test_unitcorn_toml_5_has_every_setting_its_default_and_gunicorn_name():
    """Every key of `unitcorn --print-config` is documented with a default, and marked
    gunicorn's exactly when gunicorn (the test venv's) has a setting of that name."""
    entries = _toml5_entries()
    printed = run([str(UNITCORN_BIN), "--print-config"], cwd="/").stdout
    settings, _, hooks = printed.partition("# ---- Server hooks")
    keys = set(re.findall(r"^#? ?([a-z_]+) (?:=|is unset)", settings, re.M))
    assert len(keys) > 40, printed
    assert keys <= set(entries), "not in man/unitcorn.toml.5: %s" % sorted(keys - set(entries))
    # The hooks (Python config files only) have their own section.
    hook_names = set(re.findall(r"^#? ?([a-z_]+) (?:=|is unset)", hooks, re.M))
    assert len(hook_names) == 15, hooks
    _, text = render(MAN_PAGES[1], width=200)
    section = text.split("\nSERVER HOOKS\n", 1)[1].split("\nEXAMPLES\n", 1)[0]
    missing = [h for h in hook_names if not re.search(r"^ {7}%s\(" % h, section, re.M)]
    assert not missing, "hooks not in SERVER HOOKS of unitcorn.toml(5): %s" % missing
    gunicorn = run([str(VENV / "bin" / "python"), "-c",
                    "import gunicorn.config as c; print(' '.join(s.name for s in c.KNOWN_SETTINGS))"]
                   ).stdout.split()
    assert "workers" in gunicorn
    wrong = []
    for name, text in entries.items():
        assert "Default: " in text, (name, text)
        if name in gunicorn:
            ok = "gunicorn: %s, the same setting." % name in text
        else:
            ok = "unitcorn only: gunicorn has no such setting." in text
        if not ok:
            wrong.append(name)
    assert not wrong, "gunicorn's name wrong for %s: fix UNITCORN_ONLY in src/man.rs" % wrong


def test_example_config_is_a_valid_configuration():
    r = run([str(UNITCORN_BIN), "-c", str(REPO / "packaging/example.toml.sample"),
             "--print-config"], cwd="/")
    assert 'wsgi_app = "app:app"' in r.stdout and 'bind = ["fd://http"]' in r.stdout, r.stdout


# --------------------------------------------------------------------------- the .deb

def _deb_libpython_package():
    """The Debian package of the libpython the binary links: ldd, then dpkg -S."""
    ldd = run(["ldd", str(UNITCORN_BIN)]).stdout
    m = re.search(r"(libpython3\.\d+\.so\.[\d.]+) => (\S+)", ldd)
    assert m, ldd
    path = os.path.realpath(m.group(2))
    owner = run(["dpkg", "-S", path]).stdout
    return m.group(1), owner.split(":")[0]


def test_deb_contents_dependencies_and_conffiles(packages):
    deb = str(packages["deb"])
    listing = run(["dpkg-deb", "-c", deb]).stdout
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines()
             if line.startswith("-")}
    assert files == DEB_FILES, (sorted(files - DEB_FILES), sorted(DEB_FILES - files))
    modes = {line.split()[-1].lstrip("."): (line.split()[0], line.split()[1])
             for line in listing.splitlines()}
    assert modes["/usr/bin/unitcorn"] == ("-rwxr-xr-x", "root/root"), modes
    assert all(owner == "root/root" for _, owner in modes.values()), modes

    control = run(["dpkg-deb", "-f", deb]).stdout
    fields = dict(re.findall(r"^([\w-]+): (.*)$", control, re.M))
    assert fields["Package"] == "unitcorn" and fields["Version"] == DEB_VERSION, fields
    soname, package = _deb_libpython_package()
    assert soname == "libpython3.11.so.1.0" and package == "libpython3.11", (soname, package)
    depends = [d.strip().split()[0] for d in fields["Depends"].split(",")]
    assert package in depends and "libc6" in depends, fields["Depends"]
    ctl = Path(run(["mktemp", "-d"]).stdout.strip())
    try:
        run(["dpkg-deb", "-e", deb, str(ctl)])
        assert (ctl / "conffiles").read_text().split() == ["/etc/unitcorn/example.toml.sample"]
        for script in ("postinst", "prerm", "postrm"):
            assert os.access(ctl / script, os.X_OK), script
            run(["sh", "-n", str(ctl / script)])
        # Nothing enabled or started by the package: no enable, no start.
        scripts = "".join((ctl / s).read_text() for s in ("postinst", "prerm", "postrm"))
        assert not re.search(r"\b(enable|start)\b\s", re.sub(r"#.*", "", scripts)), scripts
        md5 = (ctl / "md5sums").read_text()
        assert "usr/bin/unitcorn" in md5 and "etc/" not in md5
    finally:
        shutil.rmtree(ctl)


def test_lintian_passes_the_deb(packages):
    """No error and no warning; the overrides (packaging/lintian-overrides) are listed and
    justified in packaging/README.md."""
    need("lintian", "lintian")
    t0 = time.monotonic()
    r = run(["lintian", "--display-info", "--show-overrides", str(packages["deb"])],
            check=False, timeout=300)
    took = time.monotonic() - t0
    print("\nlintian (%.1f s):\n%s" % (took, r.stdout))
    bad = [line for line in r.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert r.returncode == 0 and not bad, r.stdout + r.stderr
    overridden = re.findall(r"^O: unitcorn: (\S+)", r.stdout, re.M)
    readme = (REPO / "packaging" / "README.md").read_text()
    for tag in overridden:
        assert tag in readme, "override %s not justified in packaging/README.md" % tag


# --------------------------------------------------------------------------- the .rpm

def _rpm_scriptlets(rpm):
    """{'postinstall': text, 'preuninstall': ..., 'postuninstall': ...} of rpm -qp --scripts."""
    out = run(["rpm", "-qp", "--scripts", rpm]).stdout
    parts = re.split(r"^(\w+) scriptlet \(using /bin/sh\):\n", out, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def _deb_scripts(deb):
    ctl = Path(run(["mktemp", "-d"]).stdout.strip())
    try:
        run(["dpkg-deb", "-e", deb, str(ctl)])
        return {s: (ctl / s).read_text() for s in ("postinst", "prerm", "postrm")}
    finally:
        shutil.rmtree(ctl)


# What a maintainer script of the .deb does, and where the .rpm does it: (what, deb
# script, rpm scriptlet, pattern both must match). Debian's deb-systemd-invoke is
# systemctl behind policy-rc.d; the .rpm has no purge, so /etc/unitcorn and the logs stay
# on erase (rpm keeps modified configuration as .rpmsave).
SCRIPT_DUTIES = [
    ("creates the user with systemd-sysusers", "postinst", "postinstall",
     r"systemd-sysusers /usr/lib/sysusers\.d/unitcorn\.conf"),
    ("falls back to adding the user by hand", "postinst", "postinstall",
     r"getent passwd unitcorn[^\n]*\n\s+(adduser --system --group|useradd --system --user-group)"),
    ("reloads systemd after install", "postinst", "postinstall",
     r"systemctl --system daemon-reload"),
    ("stops the instances, sockets included, on removal only", "prerm", "preuninstall",
     r"(\"\$1\" = \"remove\"|\"\$1\" -eq 0)[^\n]*\n[^\n]*\n?\s+(deb-systemd-invoke|systemctl) "
     r"stop 'unitcorn@\*\.socket' 'unitcorn@\*\.service'"),
    ("hands running instances over to the new binary on upgrade", "postinst", "postuninstall",
     r"systemctl kill --kill-whom=main --signal=SIGUSR2 'unitcorn@\*\.service'"),
    ("forgets the instances' enablement links on removal", "postrm", "postuninstall",
     r"find -P /etc/systemd/system -type l \\\n\s+-lname '\*/systemd/system/unitcorn@\.\*'"),
    ("reloads systemd after removal", "postrm", "postuninstall",
     r"systemctl --system daemon-reload"),
]


def test_rpm_file_list_and_scriptlets_match_the_deb(packages):
    need("rpm", "rpm")
    rpm = str(packages["rpm"])
    listed = set(run(["rpm", "-qpl", rpm]).stdout.split())
    assert listed == RPM_FILES | RPM_DIRS, (sorted(listed - RPM_FILES - RPM_DIRS),
                                            sorted(RPM_FILES | RPM_DIRS - listed))
    assert run(["rpm", "-qpc", rpm]).stdout.split() == ["/etc/unitcorn/example.toml.sample"]
    info = run(["rpm", "-qpi", rpm]).stdout
    assert re.search(r"^Version\s*: %s$" % re.escape(VERSION), info, re.M), info
    assert re.search(r"^License\s*: MIT$", info, re.M), info

    rpm_scripts = _rpm_scriptlets(rpm)
    assert set(rpm_scripts) == {"postinstall", "preuninstall", "postuninstall"}, rpm_scripts
    deb_scripts = _deb_scripts(str(packages["deb"]))
    for what, deb_name, rpm_name, pattern in SCRIPT_DUTIES:
        assert re.search(pattern, deb_scripts[deb_name]), \
            "the .deb's %s does not: %s" % (deb_name, what)
        assert re.search(pattern, rpm_scripts[rpm_name]), \
            "the .rpm's %s does not: %s\n%s" % (rpm_name, what, rpm_scripts[rpm_name])
    for name, text in rpm_scripts.items():
        run(["sh", "-n"], input=text)
        assert not re.search(r"\b(enable|start)\b\s", re.sub(r"#.*", "", text)), (name, text)


def test_rpm_requires_python3_and_no_libpython(packages):
    """The .rpm names what it needs on any distribution: python3 >= 3.9 (the extension
    module is abi3), glibc and libgcc_s; nothing of Debian's, no libpython soname."""
    need("rpm", "rpm")
    rpm = str(packages["rpm"])
    requires = [r for r in run(["rpm", "-qp", "--requires", rpm]).stdout.split("\n") if r]
    assert "python3 >= 3.9" in requires, requires
    assert not [r for r in requires if re.search(r"libpython|python3[\d.]*-libs|\.so\.1\.0", r)], \
        requires
    unexpected = [r for r in requires if not any(re.fullmatch(p, r) for p in RPM_REQUIRES)]
    assert not unexpected, "requirements no one expects: %s" % unexpected
    # The module is imported by path: no soname Provides: of its file name.
    provides = run(["rpm", "-qp", "--provides", rpm]).stdout.split("\n")
    assert not [p for p in provides if ".so" in p], provides
    # The launcher and the package directory.
    listed = run(["rpm", "-qlp", rpm]).stdout.split()
    assert "/usr/bin/unitcorn" in listed and RPM_PACKAGE_DIR + "/unitcorn" in listed, listed
    assert RPM_PACKAGE <= set(listed), listed


def _install_rpm(rpm, root):
    root.mkdir()
    run(["rpm", "--root", str(root), "--initdb"])
    run(["rpm", "--root", str(root), "-i", "--nodeps", "--noscripts", str(rpm)])


def test_rpm_installs_its_files_into_a_throwaway_root(packages, tmp_path):
    need("rpm", "rpm")
    root = tmp_path / "root"
    _install_rpm(packages["rpm"], root)
    for f in RPM_FILES:
        assert (root / f.lstrip("/")).is_file(), f
    launcher = root / "usr/bin/unitcorn"
    assert os.access(launcher, os.X_OK)
    assert launcher.read_text().startswith("#!/usr/bin/python3 -s\n"), launcher.read_text()[:200]
    so = root / (RPM_PACKAGE_DIR + "/unitcorn/_core.abi3.so").lstrip("/")
    needed = re.findall(r"\(NEEDED\).*\[(.*)\]", run(["readelf", "-d", str(so)]).stdout)
    assert "libc.so.6" in needed and not [n for n in needed if "python" in n], needed
    # Run by its #! line: Debian's python3, from the throwaway root's package.
    r = run([str(launcher), "--version"], env=base_env(venv=False), cwd="/")
    assert r.stdout.strip() == "unitcorn (version %s)" % VERSION, r
    # A Python older than the stable ABI's 3.9 is told so (not "undefined symbol").
    old = sorted(glob.glob(OLD_PYTHON))
    assert old, "no %s on this machine (pyenv install 3.8)" % OLD_PYTHON
    r = run([old[-1], str(launcher), "--version"], env=base_env(venv=False), cwd="/",
            check=False)
    assert r.returncode == 1 and r.stdout == "" and r.stderr.startswith(
        "unitcorn: Python 3.8 is not supported: unitcorn serves CPython 3.9 and later"), r
    r = run(["rpm", "--root", str(root), "-V", "--nodeps", "unitcorn"], check=False)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
    run(["rpm", "--root", str(root), "-e", "--nodeps", "--noscripts", "unitcorn"])
    left = [str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and "unitcorn" in str(p) and not str(p.relative_to(root)).startswith(
                ("var/lib/rpm", "usr/lib/sysimage/rpm"))]
    assert not left, left


# ------------------------------------------------ the .rpm's launcher on another Python

@pytest.fixture(scope="module")
def rpm_root(packages, tmp_path_factory):
    """The .rpm installed into a throwaway root (no scriptlets, no dependencies)."""
    need("rpm", "rpm")
    root = tmp_path_factory.mktemp("rpm-root") / "root"
    _install_rpm(packages["rpm"], root)
    return root


@pytest.fixture(scope="module")
def other_python():
    """pyenv's CPython 3.12: not /usr/bin/python3 (3.11), which everything was built with."""
    found = sorted(glob.glob(OTHER_PYTHON))
    assert found, "no %s on this machine (pyenv install 3.12)" % OTHER_PYTHON
    python = found[-1]
    assert os.path.realpath(python) != os.path.realpath("/usr/bin/python3"), python
    return python


def _launch(servers, cmd, tmp_path, cwd, name="server"):
    port = free_port()
    s = Server([str(c) for c in cmd] + ["-b", "127.0.0.1:%d" % port], base_env(venv=False),
               cwd, tmp_path, addr=("127.0.0.1", port), name=name)
    servers.append(s)
    s.wait_ready(timeout=60)
    return s


def _gone(pid):
    """pid has exited (it may be a zombie of a parent that is not us)."""
    return not alive(pid)


def test_rpm_launcher_serves_a_wsgi_app_on_another_python(rpm_root, other_python, servers,
                                                          tmp_path):
    s = _launch(servers, [other_python, rpm_root / "usr/bin/unitcorn", "-w", "2",
                          "wsgiapp:app"], tmp_path, cwd=APPS)
    r = s.get("/")
    assert r.status == 200 and r.body == b"Hello, World!\n", r
    # The package is the throwaway root's, the standard library 3.12's.
    got = s.get("/import?name=unitcorn").json()
    assert got == {"ok": True, "file": str(rpm_root / RPM_PACKAGE_DIR.lstrip("/") /
                                            "unitcorn/__init__.py")}, got
    os_file = s.get("/import?name=os").json()["file"]
    assert os_file.startswith(str(Path(other_python).parent.parent / "lib/python3.12")), os_file
    # The launcher's directory is not on the app's sys.path.
    assert str(rpm_root / "usr/bin") not in s.get("/syspath").json()
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(30) == 0, s.stderr()[-3000:]
    assert "Shutting down: Master" in s.stderr()
    # No __pycache__ written into the package's directory.
    written = sorted(str(p) for p in (rpm_root / "usr/lib/unitcorn").rglob("__pycache__"))
    assert not written, written


VERSION_APP = """\
import json, os, sys
import unitcorn


def app(environ, start_response):
    body = json.dumps({"version_info": list(sys.version_info[:3]),
                       "executable": sys.executable, "unitcorn": unitcorn.__file__,
                       "master": os.getppid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""


def test_rpm_launcher_runs_the_app_on_that_python_across_a_binary_upgrade(
        rpm_root, other_python, servers, tmp_path):
    """USR2, what the .rpm's upgrade scriptlet sends: the new master is `python -m
    unitcorn` of the same interpreter, and finds the same package (the launcher's
    PYTHONPATH)."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "versionapp.py").write_text(VERSION_APP)
    pidfile = tmp_path / "unitcorn.pid"
    s = _launch(servers, [other_python, rpm_root / "usr/bin/unitcorn", "-p", pidfile,
                          "versionapp:app"], tmp_path, cwd=app_dir)
    package = str(rpm_root / RPM_PACKAGE_DIR.lstrip("/") / "unitcorn/__init__.py")
    got = s.get("/").json()
    assert got["version_info"][:2] == [3, 12], got
    assert got["executable"] == other_python and got["unitcorn"] == package, got
    assert got["master"] == s.pid, got

    old = s.pid
    s.signal(signal.SIGUSR2)
    assert wait_for(lambda: _gone(old), 30), s.stderr()[-3000:]
    assert s.wait_exit(10) == 0, s.stderr()[-3000:]
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip()
                    and int(pidfile.read_text()) != old, 10), s.stderr()[-3000:]
    new = int(pidfile.read_text())
    try:
        got = wait_for(lambda: (lambda g: g if g["master"] == new else None)(s.get("/").json()),
                       10)
        assert got, (s.get("/").json(), s.stderr()[-3000:])
        assert got["version_info"][:2] == [3, 12], got
        assert got["executable"] == other_python and got["unitcorn"] == package, got
    finally:
        os.kill(new, signal.SIGQUIT)
    assert wait_for(lambda: _gone(new), 30), "the new master did not stop: " + s.stderr()[-3000:]
    assert "Master has been promoted" in s.stderr(), s.stderr()[-3000:]


def test_packages_are_reproducible(packages, tmp_path):
    """A second build gives the same bytes (SOURCE_DATE_EPOCH from the changelog)."""
    again = build(tmp_path)
    for fmt in ("deb", "rpm"):
        a = hashlib.sha256(Path(packages[fmt]).read_bytes()).hexdigest()
        b = hashlib.sha256(Path(again[fmt]).read_bytes()).hexdigest()
        assert a == b, "%s differs between two builds" % fmt


# --------------------------------------------------------------------------- under systemd

PKG_STAGE = ts.STAGE            # systemd_units' client paths (CLIENT) point there
DEMO_TOML = """\
wsgi_app = "systemdapp:app"
chdir = "/srv/demo"
virtualenv = "%s"
bind = ["fd://http"]
workers = %d
graceful_timeout = 10
accesslog = "-"
""" % (ts.VENV_INSIDE, ts.WORKERS)


@pytest.fixture(scope="module")
def box(packages, tmp_path_factory):
    """A container with the .deb installed by dpkg -i (and the state before it)."""
    stage = tmp_path_factory.mktemp("pkg-stage")
    shutil.copy2(packages["deb"], stage / "unitcorn.deb")
    for src in (APPS / "systemdapp.py", TESTS / "harness.py", TESTS / "systemd_client.py"):
        shutil.copy2(src, stage / src.name)
    (stage / "demo.toml").write_text(DEMO_TOML)
    for p in stage.iterdir():
        p.chmod(0o644)
    stage.chmod(0o755)
    c = Container.boot(binds={str(stage): PKG_STAGE, str(VENV): ts.VENV_INSIDE},
                       prefix="unitcorn-p")
    try:
        # The image's policy-rc.d refuses service actions of maintainer scripts.
        c.run(["rm", "-f", "/usr/sbin/policy-rc.d"])
        before = {
            "user": c.run(["getent", "passwd", "unitcorn"], check=False).returncode,
            "links": _unit_links(c),
            "etc_systemd": _tree(c, "/etc/systemd/system"),
        }
        t0 = time.monotonic()
        r = c.run(["dpkg", "-i", PKG_STAGE + "/unitcorn.deb"], timeout=120)
        c.dpkg_output = r.stdout + r.stderr
        c.install_seconds = time.monotonic() - t0
        c.before = before
        yield c
    finally:
        c.close()


def _unit_links(box):
    return box.run("find -P /etc/systemd /run/systemd/system /usr/lib/systemd/system "
                   "-name '*unitcorn*' 2>/dev/null | sort", check=False).stdout.split()


def _tree(box, path):
    return box.run("find %s 2>/dev/null | sort" % path, check=False).stdout.split()


def _new_in_etc_systemd(box):
    """What appeared in /etc/systemd/system since before the install and is ours: a path
    naming unitcorn, or a directory left empty (sockets.target.wants once its link is
    gone). Other packages' changes (man-db's trigger enables its timer) are not."""
    before = set(box.before["etc_systemd"])
    empty = set(box.run("find /etc/systemd/system -type d -empty", check=False).stdout.split())
    return sorted(p for p in set(_tree(box, "/etc/systemd/system")) - before
                  if "unitcorn" in p or p in empty)


def _processes(box):
    """unitcorn processes in the container: [(pid, user, args)]."""
    out = box.run(["ps", "-eo", "pid=,user:20=,args="]).stdout
    return [line for line in out.splitlines() if "unitcorn" in line and "ps -eo" not in line
            and "dpkg" not in line]


def _configure_demo(box):
    """The demo instance configured, its socket enabled and listening."""
    box.run(["install", "-D", "-m", "0644", PKG_STAGE + "/demo.toml", ts.CONFIG])
    box.run(["install", "-D", "-m", "0644", PKG_STAGE + "/systemdapp.py",
             "/srv/demo/systemdapp.py"])
    box.run(["systemctl", "enable", "--now", ts.SOCKET])


def test_install_creates_the_user_and_enables_and_starts_nothing(box):
    assert box.before["user"] == 2, "a unitcorn user exists before the install"
    assert box.before["links"] == [], box.before["links"]
    print("\ndpkg -i: %.1f s" % box.install_seconds)
    assert box.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "unitcorn"]).stdout == \
        "install ok installed %s" % DEB_VERSION
    pw = box.run(["getent", "passwd", "unitcorn"]).stdout.strip().split(":")
    assert int(pw[2]) < 1000 and pw[5] == "/nonexistent" and pw[6].endswith("nologin"), pw
    box.run(["getent", "group", "unitcorn"])
    # Only the package's own files: no instance enabled, nothing running, no socket.
    assert _unit_links(box) == ["/usr/lib/systemd/system/unitcorn@.service",
                                "/usr/lib/systemd/system/unitcorn@.socket"], _unit_links(box)
    assert not _new_in_etc_systemd(box), _new_in_etc_systemd(box)
    units = box.run(["systemctl", "list-units", "--all", "--no-legend", "unitcorn*"]).stdout
    assert units.strip() == "", units
    assert not _processes(box), _processes(box)
    assert box.run(["ls", "/etc/unitcorn"]).stdout.split() == ["example.toml.sample"]
    assert "Created symlink" not in box.dpkg_output, box.dpkg_output
    # The man pages are installed where man finds them.
    assert "unitcorn.toml" in box.run(["man", "-w", "5", "unitcorn.toml"]).stdout


def test_installed_units_verify_clean_with_their_man_pages(box):
    """systemd-analyze verify exits 0 even on errors: any output is a failure. Without
    --man=no, it also checks that the Documentation= man pages are installed."""
    r = box.run(["systemd-analyze", "verify", ts.SOCKET, ts.SERVICE], check=False)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_instance_serves_as_unitcorn_and_logs_access_to_the_journal(box):
    _configure_demo(box)
    journal = ts.Journal(box)
    link = "/etc/systemd/system/sockets.target.wants/%s" % ts.SOCKET
    assert box.run(["readlink", link]).stdout.strip().endswith("/systemd/system/unitcorn@.socket")
    assert ts.show(box, ts.SERVICE, "ActiveState")["ActiveState"] == "inactive"
    r = ts.get(box, "/whoami", timeout=30)
    assert r.get("status") == 200, "%r; %s" % (r, journal.excerpt())
    me = json.loads(r["body"])
    uid = int(box.run(["id", "-u", "unitcorn"]).stdout)
    assert (me["user"], me["uid"]) == ("unitcorn", uid), me
    assert me["flask_file"].startswith(ts.VENV_INSIDE + "/lib/"), me
    ts.until("the service active", lambda: ts.show(
        box, ts.SERVICE, "ActiveState")["ActiveState"] == "active", 15, journal)
    master = ts.main_pid(box)
    assert {p["uid"] for p in ts.tree(box, master)} == {uid}
    assert ts.get(box, "/pkg-first-request")["status"] == 200

    def access_entry():
        got = journal.entries("REQUEST_PATH=/pkg-first-request")
        return got[-1] if got else None
    e = ts.until("the access entry in journalctl -u %s" % ts.SERVICE, access_entry, 10, journal)
    assert e.get("STATUS") == "200" and e.get("SYSLOG_IDENTIFIER") == "unitcorn-access", e
    text = box.run(["journalctl", "--no-pager", "-u", ts.SERVICE]).stdout
    assert '"GET /pkg-first-request HTTP/1.1" 200' in text, text[-3000:]


def test_reload_under_load_fails_no_request(box):
    journal = ts.Journal(box)
    master, gen = ts.start_by_request(box, journal)
    load = ts.InsideLoad(box, journal, max_seconds=60)
    try:
        load.wait_ok(100)
        box.run(["systemctl", "reload", ts.SERVICE], timeout=60)

        def new_generation():
            ws = ts.workers_of(box, master)
            return ws if len(ws) == ts.WORKERS and not set(ws) & set(gen) else None
        new = ts.until("the new generation, the old one gone", new_generation, 30, journal)
        load.wait_served_by(new)
        result = load.finish()
    finally:
        load.close()
    print("\nload across systemctl reload: %s" % result["summary"])
    assert not result["failures"], "%s\n%s" % (result["summary"], journal.excerpt())
    assert result["ok"] > 100, result["summary"]
    assert ts.main_pid(box) == master


def test_upgrade_hands_running_instances_over_to_the_new_binary(box):
    """dpkg -i of the package over itself is an upgrade: postinst sends the running
    instance USR2, a new master from the binary just unpacked takes over (MAINPID=), the
    old one leaves gracefully; it serves on."""
    journal = ts.Journal(box)
    master, _ = ts.start_by_request(box, journal)
    box.run(["dpkg", "-i", PKG_STAGE + "/unitcorn.deb"], timeout=120)
    svc = ts.until("a new master after the upgrade", lambda: (
        lambda s: s if s["ActiveState"] == "active" and int(s["MainPID"]) not in (0, master)
        else None)(ts.show(box, ts.SERVICE, "ActiveState", "MainPID")), 30, journal)
    assert ts.get(box, "/pid")["status"] == 200
    assert "SIGKILL" not in journal.text(), journal.excerpt()
    assert svc["ActiveState"] == "active"
    ts.until("the hand-over in the journal", lambda: "Master has been promoted" in
             journal.text() or None, 15, journal)
    assert "Stopping" not in journal.text(), "the instance was restarted, not handed over: " \
        + journal.excerpt()


def test_stop_is_graceful(box):
    journal = ts.Journal(box)
    _, workers = ts.start_by_request(box, journal)
    ts.stop_with_a_request_in_flight(box, journal, workers)


def test_purge_stops_the_instance_and_leaves_nothing_behind(box):
    journal = ts.Journal(box)
    ts.start_by_request(box, journal)           # running, as the socket activated it
    # What an admin leaves: a drop-in (systemctl edit), a log directory.
    box.run("mkdir -p /etc/systemd/system/%s.d && printf '[Service]\\nEnvironment=X=1\\n' "
            ">/etc/systemd/system/%s.d/override.conf && systemctl daemon-reload"
            % (ts.SERVICE, ts.SERVICE))
    box.run(["install", "-d", "-o", "unitcorn", "/var/log/unitcorn"])
    r = box.run(["dpkg", "-P", "unitcorn"], timeout=120)
    assert not _processes(box), "%r\n%s" % (_processes(box), r.stdout + r.stderr)
    for unit in (ts.SOCKET, ts.SERVICE):
        state = ts.show(box, unit, "ActiveState", "LoadState")
        assert state["ActiveState"] == "inactive" and state["LoadState"] == "not-found", \
            (unit, state)
    # Nothing of the package, no configuration, no instance link or drop-in.
    left = [f for f in DEB_FILES if box.run(["test", "-e", f], check=False).returncode == 0]
    assert not left, left
    for path in ("/etc/unitcorn", "/var/log/unitcorn", "/run/unitcorn"):
        assert box.run(["test", "-e", path], check=False).returncode != 0, path
    assert _unit_links(box) == [], _unit_links(box)
    assert not _new_in_etc_systemd(box), _new_in_etc_systemd(box)
    status = box.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "unitcorn"], check=False)
    assert status.returncode != 0 or status.stdout.strip() in ("", "un"), status.stdout
    # The user stays (Debian's practice: it may still own files; a later user must not
    # inherit them).
    box.run(["getent", "passwd", "unitcorn"])


# The first test to ask for the packages builds them: every test that may be that one is
# bounded by the build's time on top of the usual 180 s (pytest.ini).
for _name, _test in list(globals().items()):
    if _name.startswith("test_") and {"packages", "box", "rpm_root"} & set(
            inspect.signature(_test).parameters):
        globals()[_name] = pytest.mark.timeout(180 + BUILD_TIMEOUT)(_test)
