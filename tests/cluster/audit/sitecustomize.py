"""Loaded by the cluster test's service pods (PYTHONPATH): reports every third-party module the project's
own code loads, with the project module that asked for it, as ``distillery-import-audit: <module> <- <caller>``
on stderr (the pod log). tests/cluster checks each against the extra the service's image installs."""

import sys

_PROJECT = ("distillery", "distillery_services")  # services/ installs as distillery_services


def _audit(event, args):
    if event != "import":  # raised once per module, when it is first loaded
        return
    top = str(args[0]).partition(".")[0]
    if top in _PROJECT or top in sys.stdlib_module_names or top.startswith("_"):
        return
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen_importlib")):
        frame = frame.f_back
    caller = frame.f_globals.get("__name__", "") if frame is not None else ""
    if caller.partition(".")[0] in _PROJECT:
        sys.stderr.write(f"distillery-import-audit: {top} <- {caller}\n")


sys.addaudithook(_audit)
