# comfypak's PEP 517 hook runner: run by the build environment's interpreter inside the
# target runtime's sandbox, in the unpacked source tree. argv: HOOK REQUEST.json. The request
# names the backend, its backend-path, the config settings, the output folder, the log file
# and the result file. Everything the backend prints goes to the log; the result (the hook's
# return value, or the error) goes to the result file, written whole.
import importlib
import json
import os
import sys
import traceback


def write_result(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def guard_network(record):
    """The sandbox has no network; make an attempt fail at once, saying what was wanted."""
    import socket

    def refuse(wanted):
        with open(record, "a") as f:
            f.write(json.dumps(wanted) + "\n")
        raise OSError(101, "comfypak builds have no network (wanted %s)" % wanted)

    local = (None, "", "localhost", "127.0.0.1", "::1")
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in local:
            return real_getaddrinfo(host, port, *args, **kwargs)
        refuse("%s:%s" % (host, port))

    socket.getaddrinfo = getaddrinfo
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return real_connect(self, address)
        if isinstance(address, tuple) and address and address[0] in local:
            return real_connect(self, address)
        refuse("%s" % (address,))

    socket.socket.connect = connect
    import urllib.request

    real_open = urllib.request.OpenerDirector.open

    def open_url(self, fullurl, *args, **kwargs):
        url = fullurl if isinstance(fullurl, str) else fullurl.full_url
        if not url.startswith("file:"):
            refuse(url)
        return real_open(self, fullurl, *args, **kwargs)

    urllib.request.OpenerDirector.open = open_url


def main():
    hook, request_path = sys.argv[1], sys.argv[2]
    with open(request_path) as f:
        request = json.load(f)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    # Line by line, so the backend's prints and a traceback land in the order they happened.
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    print("comfypak: %s via %s" % (hook, request["backend"]), flush=True)
    guard_network(request["network"])
    for entry in reversed(request["backend_path"]):
        sys.path.insert(0, os.path.abspath(entry))
    module, _, obj = request["backend"].partition(":")
    try:
        backend = importlib.import_module(module)
        for attr in filter(None, obj.split(".")):
            backend = getattr(backend, attr)
    except BaseException as e:
        traceback.print_exc()
        write_result(request["result"], {"error": "backend", "message": "%s: %s" % (type(e).__name__, e)})
        sys.exit(3)
    settings = request["config_settings"] or None
    try:
        if hook == "get_requires_for_build_wheel":
            function = getattr(backend, hook, None)
            value = list(function(settings)) if function else []
        elif hook == "prepare_metadata_for_build_wheel":
            function = getattr(backend, hook, None)
            value = function(request["out"], settings) if function else None
        elif hook == "build_wheel":
            value = backend.build_wheel(request["out"], settings, request.get("metadata_directory"))
        else:
            raise ValueError("unknown hook " + hook)
    except BaseException as e:
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        write_result(request["result"], {"error": "hook", "message": "%s: %s" % (type(e).__name__, e)})
        sys.exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    write_result(request["result"], {"return": value})


main()
