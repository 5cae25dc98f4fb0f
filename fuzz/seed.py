#!/usr/bin/env python3
"""Seed the fuzz corpora (fuzz/corpus/<target>/, git-ignored) with gunicorn's own request
cases and a few values per reader.

    python3 fuzz/seed.py            (any Python with pip: tests/run.sh uses the test venv's)

gunicorn's corpus is tests/requests/{valid,invalid}/*.http in the gunicorn 27.0.1 sdist,
fetched from PyPI once per machine into ~/.cache/unitcorn-tests ($UNITCORN_TEST_CACHE) by
`pip download`, exactly as tests/http/test_gunicorn_corpus.py fetches it (and shared with
it): it is never copied into this repository. Each .http file is decoded as gunicorn's
tests/treq.py decodes it (the corpus test's oracle runs treq itself): the file's newlines
are layout and dropped, then the escapes `\\r\\n`, `\\0`, `\\n`, `\\t` and `\\xHH` become
bytes. A case that starts with a PROXY header also seeds the HTTP targets without it.

Idempotent: seed files are named by their content's hash, so rerunning adds nothing.
"""

import hashlib
import os
import re
import subprocess
import sys
import tarfile

GUNICORN = "27.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("UNITCORN_TEST_CACHE", os.path.expanduser("~/.cache/unitcorn-tests"))
V2_SIGNATURE = b"\r\n\r\n\0\r\nQUIT\n"


def sdist():
    """The gunicorn sdist, downloaded once per machine and unpacked (as the corpus test)."""
    root = os.path.join(CACHE, "gunicorn-%s" % GUNICORN)
    if os.path.isdir(os.path.join(root, "tests", "requests")):
        return root
    os.makedirs(CACHE, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", "--dest", CACHE, "gunicorn==%s" % GUNICORN],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        sys.exit("cannot fetch gunicorn %s's sdist from PyPI:\n%s" % (GUNICORN, r.stderr))
    unpack = root + ".partial"
    with tarfile.open(os.path.join(CACHE, "gunicorn-%s.tar.gz" % GUNICORN)) as tar:
        members = tar.getmembers()
        for m in members:
            if m.name.startswith("/") or ".." in m.name.split("/") or m.issym() or m.islnk():
                sys.exit("unexpected sdist member %r" % m.name)
        tar.extractall(unpack, members=members)
    os.rename(os.path.join(unpack, "gunicorn-%s" % GUNICORN), root)
    os.rmdir(unpack)
    return root


def decode(raw):
    """gunicorn's treq.request / treq.badrequest decoding of a .http file."""
    data = raw.replace(b"\n", b"").replace(b"\\r\\n", b"\r\n")
    data = data.replace(b"\\0", b"\000").replace(b"\\n", b"\n").replace(b"\\t", b"\t")
    return re.sub(rb"\\x([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), data)


def without_proxy(data):
    if data.startswith(b"PROXY "):
        end = data.find(b"\r\n")
        return data[end + 2:] if end >= 0 else None
    if data.startswith(V2_SIGNATURE) and len(data) >= 16:
        return data[16 + int.from_bytes(data[14:16], "big"):]
    return None


def write(target, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, hashlib.sha1(data).hexdigest())
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
        return 1
    return 0


BINDS = ["127.0.0.1:8000", "0.0.0.0", "[::1]:8080", "[::]", "localhost:80", "example.com",
         "unix:/run/unitcorn.sock", "unix:relative.sock", "fd://3", "fd://listener",
         ":8000", "8000", "tcp://127.0.0.1:1", "[fe80::1%eth0]:80", "unix:@abstract"]

ACCESS_FORMATS = [
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
    '%(h)s %(t)s %(m)s %(U)s?%(q)s %(H)s %(s)s %(B)s %(T)s %(M)s %(D)s %(L)s %(p)s',
    '%({x-id}i)s %({server}o)s %({REMOTE_PORT}e)s %%(h)s 100%%',
    '%(h)s\0GET\0/a b\0q="x"\0Basic dXNlcjpwYXNz',
]

# Command-line texts for the value readers, each tried against every setting index.
VALUES = ["1", "0", "true", "false", " 42 ", "0o022", "0022", "0x1ff", "127.0.0.1:8000",
          "a, b,", "X-FORWARDED-PROTO=https,X-B=c", "/tmp/x", "info", "sync", "-", ""]


def main():
    added = 0
    root = os.path.join(sdist(), "tests", "requests")
    for kind in ("valid", "invalid"):
        folder = os.path.join(root, kind)
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".http"):
                continue
            with open(os.path.join(folder, name), "rb") as f:
                data = decode(f.read())
            added += write("strict_scanner", data) + write("strict_vs_hyper", data)
            rest = without_proxy(data)
            if rest is not None:
                added += write("proxy_protocol", data)
                added += write("strict_scanner", rest) + write("strict_vs_hyper", rest)
    for b in BINDS:
        added += write("bind_address", b.encode())
    for f in ACCESS_FORMATS:
        added += write("access_format", f.encode())
    for text in sorted(os.listdir(os.path.join(HERE, "..", "examples"))):
        if text.endswith(".toml"):
            with open(os.path.join(HERE, "..", "examples", text), "rb") as f:
                added += write("config_file", f.read())
    added += write("config_file", b'workers = 4\nbind = ["127.0.0.1:8000", "unix:/run/u.sock"]\n'
                                  b'umask = "0022"\nsecure_scheme_headers = { "X-FORWARDED-PROTO" = "https" }\n'
                                  b'raw_env = ["A=1"]\nkeepalive = 0x10\n')
    for index in range(256):
        for v in VALUES:
            added += write("config_value", bytes([index]) + v.encode())
    print("fuzz/seed.py: %d new seed files under %s" % (added, os.path.join(HERE, "corpus")))


if __name__ == "__main__":
    main()
