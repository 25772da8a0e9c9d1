#!/usr/bin/env python3
"""Local stand-ins for the public git repositories that pak/pak7.txt names, served over git's
smart HTTP protocol (`git http-backend` as CGI) on 127.0.0.1, for tests/e2e-sources.sh.

    git-mirrors.py WORK PAK_FILE... [--snapshots DIR] [--index URL]

The public forges cannot be reached from the machines the e2e runs on, so for every
`git+https://HOST/OWNER/NAME...` line of the pak files it makes a bare repository at
WORK/git/OWNER/NAME (the URL's path, `.git` suffix and all), from the first of:

  1. a snapshot of the same repository: DIR/OWNER+NAME/repo, a bare git repository (cloned
     with all its branches and tags);
  2. the public index's newest sdist of the same project name (its sha256 checked against the
     index page), unpacked and committed as one commit on `main`: an equivalent repository,
     not the forge's history;
  3. neither: a stand-in package of that name (a module with a `__version__`, no dependencies),
     said so loudly.

Then it serves WORK/git on 127.0.0.1 (a free port) and prints, on one line each:
    mirror OWNER/NAME: snapshot|sdist FILE|stand-in
    url http://127.0.0.1:PORT/
    ready
and serves until it is killed. The e2e points git at it with git's own URL rewriting
(`url.http://127.0.0.1:PORT/.insteadOf=https://HOST/` through GIT_CONFIG_COUNT/KEY/VALUE),
so the stack keeps the public URLs. Nothing of these repositories is part of comfypak.
"""

import hashlib
import html.parser
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GIT_ENV = {
    "GIT_AUTHOR_NAME": "comfypak e2e",
    "GIT_AUTHOR_EMAIL": "e2e@comfypak.invalid",
    "GIT_COMMITTER_NAME": "comfypak e2e",
    "GIT_COMMITTER_EMAIL": "e2e@comfypak.invalid",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git(*args, cwd=None):
    env = dict(os.environ, **GIT_ENV)
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def git_lines(paths):
    """(host, owner/name path) of every git+https line of the pak files."""
    found = []
    for path in paths:
        for line in open(path, encoding="utf-8"):
            m = re.search(r"git\+https://([^/\s]+)/([^@#\s]+)", line.split(" #")[0])
            if m and not line.lstrip().startswith("#"):
                found.append((m.group(1), m.group(2).rstrip("/")))
    return found


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.links.append(href)


def index_sdist(index, project):
    """(filename, bytes) of the newest sdist the index lists for `project`, or None."""
    norm = re.sub(r"[-_.]+", "-", project).lower()
    url = index.rstrip("/") + "/" + norm + "/"
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            page = r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
    parser = Links()
    parser.feed(page)
    sdists = [h for h in parser.links if urllib.parse.urldefrag(h)[0].endswith(".tar.gz")]
    if not sdists:
        return None
    href = urllib.parse.urljoin(url, sdists[-1])  # the page lists oldest first
    plain, fragment = urllib.parse.urldefrag(href)
    with urllib.request.urlopen(plain, timeout=120) as r:
        data = r.read()
    want = dict(p.split("=", 1) for p in fragment.split("&") if "=" in p).get("sha256")
    if want and hashlib.sha256(data).hexdigest() != want:
        sys.exit(f"git-mirrors: {plain}: sha256 {hashlib.sha256(data).hexdigest()}, the index says {want}")
    return os.path.basename(plain), data


def commit_tree(tree, bare):
    """One commit of `tree` on `main` in the new bare repository `bare`."""
    git("init", "-q", "-b", "main", tree)
    git("add", "-A", cwd=tree)
    git("commit", "-q", "-m", "import", cwd=tree)
    git("clone", "-q", "--bare", tree, bare)
    shutil.rmtree(tree)


def make(work, host, path, snapshots, index):
    bare = os.path.join(work, "git", path)
    owner_name = path[:-4] if path.endswith(".git") else path
    owner, name = owner_name.split("/", 1)
    snapshot = os.path.join(snapshots, f"{owner}+{name}", "repo") if snapshots else None
    if os.path.isdir(bare):
        shutil.rmtree(bare)
    os.makedirs(os.path.dirname(bare), exist_ok=True)
    if snapshot and os.path.isdir(snapshot):
        git("clone", "-q", "--bare", snapshot, bare)
        return "snapshot of the same repository"
    tree = bare + ".tree"
    shutil.rmtree(tree, ignore_errors=True)
    got = index_sdist(index, name) if index else None
    if got:
        filename, data = got
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tree + ".unpack", filter="data")
        (top,) = os.listdir(tree + ".unpack")
        shutil.move(os.path.join(tree + ".unpack", top), tree)
        os.rmdir(tree + ".unpack")
        commit_tree(tree, bare)
        return f"made from the index's sdist {filename} (an equivalent repository, not the forge's)"
    module = re.sub(r"[-.]+", "_", name).lower()
    os.makedirs(os.path.join(tree, module))
    with open(os.path.join(tree, module, "__init__.py"), "w") as f:
        f.write(f'"""Stand-in for {host}/{owner_name} (not reachable here)."""\n__version__ = "0.0.0"\n')
    with open(os.path.join(tree, "pyproject.toml"), "w") as f:
        f.write(
            "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n\n"
            f"[project]\nname = \"{name}\"\nversion = \"0.0.0\"\n"
            f"description = \"stand-in for {host}/{owner_name}\"\n\n"
            f"[tool.setuptools]\npackages = [\"{module}\"]\n"
        )
    commit_tree(tree, bare)
    return "STAND-IN (no snapshot, no sdist on the index): a package of that name with no code"


class Backend(BaseHTTPRequestHandler):
    root = ""

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def cgi(self):
        path, _, query = self.path.partition("?")
        data = self.body() if self.command == "POST" else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": "/nonexistent",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": urllib.parse.unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(data)),
            "REMOTE_ADDR": "127.0.0.1",
        }
        for header in ("Content-Encoding", "Git-Protocol"):
            if self.headers.get(header):
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        run = subprocess.run(["git", "http-backend"], input=data, env=env, capture_output=True)
        head, _, payload = run.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = run.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = cgi
    do_POST = cgi


def main():
    args = sys.argv[1:]
    snapshots = index = None
    rest = []
    while args:
        a = args.pop(0)
        if a == "--snapshots":
            snapshots = args.pop(0)
        elif a == "--index":
            index = args.pop(0)
        else:
            rest.append(a)
    if len(rest) < 2:
        sys.exit(__doc__)
    work, paks = os.path.abspath(rest[0]), rest[1:]
    for host, path in git_lines(paks):
        print(f"mirror {host}/{path}: {make(work, host, path, snapshots, index)}", flush=True)
    Backend.root = os.path.join(work, "git")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    print(f"url http://127.0.0.1:{server.server_address[1]}/", flush=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
