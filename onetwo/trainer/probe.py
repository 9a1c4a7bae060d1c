"""Runs inside the trainer's Python (which may not have onetwo): what torch sees, and which modules import.

Standard library only; onetwo passes this file's text with `python -c` and the request as the one argument, so no
folder of onetwo's lands on that Python's sys.path. Nothing here loads a model. The result is the last line of
stdout, after RESULT_MARKER (the imported libraries may print too).
"""

import importlib
import json
import os
import sys

RESULT_MARKER = "onetwo-probe-result: "


def _error(exc):
    missing = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
    return {"error": f"{type(exc).__name__}: {exc}", "missing": missing}


def probe(request):
    result = {"python": sys.executable, "version": sys.version.split()[0], "torch": None, "cuda": False,
              "devices": [], "mps": False, "modules": {}}
    if os.path.isdir(request.get("sd_scripts") or ""):
        sys.path.insert(0, request["sd_scripts"])  # networks.lora and library.* live in the checkout
    result["path"] = [entry for entry in sys.path if entry]  # what a cached answer is keyed by
    try:
        import torch

        result["torch"] = torch.__version__
        result["cuda"] = bool(torch.cuda.is_available())
        if result["cuda"]:
            result["devices"] = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
        mps = getattr(torch.backends, "mps", None)
        result["mps"] = bool(mps is not None and mps.is_available())
    except BaseException as exc:  # a broken install raises anything (OSError for a missing CUDA library)
        result["torch_error"] = _error(exc)
    for name in request.get("modules", []):
        try:
            importlib.import_module(name)
            result["modules"][name] = None
        except BaseException as exc:
            result["modules"][name] = _error(exc)
    return result


if __name__ == "__main__":
    outcome = probe(json.loads(sys.argv[1]))
    sys.stdout.flush()
    print("\n" + RESULT_MARKER + json.dumps(outcome))
