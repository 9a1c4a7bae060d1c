"""Install the training side into the active Python: the pinned sd-scripts submodule, torch, their requirements.

Order matters: torch first, then everything else constrained to the torch that is installed, so no requirement
can pull in a different (multi-GB) torch build. sd-scripts' requirements.txt ends with `-e .`, so pip runs from
inside the checkout. Usage: python scripts/setup_trainer.py [--torch "torch==X torchvision==Y"] [--skip-submodule]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBMODULE = ROOT / "third_party" / "sd-scripts"
DEFAULT_TORCH = "torch==2.14.1 torchvision==0.29.1"
EXTRA = ["accelerate", "lycoris-lora>=3,<4"]  # lycoris-lora 4.x fails on SD1.x ("duplicated lora name")
CUDA_PROBE = "import torch; print(torch.cuda.is_available(), torch.__version__)"
TORCH_FAMILY = ("torch", "torchvision", "triton", "nvidia-")


def run(argv: list[str], cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, cwd=cwd, check=check, text=True)


def git_output(argv: list[str], cwd: Path) -> str:
    return subprocess.run(["git", *argv], cwd=cwd, check=True, text=True, capture_output=True).stdout


def missing_blobs(repo: Path, commit: str) -> list[str]:
    """Paths whose content a partial mirror of the repository lacks (large binaries, typically)."""
    listing = git_output(["ls-tree", "-r", commit], repo).splitlines()
    objects = "\n".join(line.split()[2] for line in listing) + "\n"
    probe = subprocess.run(["git", "cat-file", "--batch-check"], cwd=repo, input=objects, text=True,
                           capture_output=True, check=True).stdout.splitlines()
    return [line.split("\t", 1)[1] for line, answer in zip(listing, probe, strict=True) if answer.endswith(" missing")]


def init_submodule() -> bool:
    if (SUBMODULE / "train_network.py").is_file():
        print(f"sd-scripts: already checked out at {SUBMODULE}")
        return True
    if run(["git", "submodule", "update", "--init", "third_party/sd-scripts"], check=False).returncode == 0:
        return True
    # A mirror without some large files (Windows DLLs, a tokenizer) cannot check out the whole tree:
    # check out everything else, which is all train_network.py needs.
    commit = git_output(["ls-tree", "HEAD", "third_party/sd-scripts"], ROOT).split()[2]
    if not (SUBMODULE / ".git").exists():
        print("sd-scripts: the submodule could not be cloned; see docs/trainer-python.md, 'Getting sd-scripts'",
              file=sys.stderr)
        return False
    missing = missing_blobs(SUBMODULE, commit)
    print(f"sd-scripts: checking out without {len(missing)} file(s) the source lacks: {', '.join(missing)}")
    run(["git", "sparse-checkout", "set", "--no-cone", "/*", *[f"!/{path}" for path in missing]], cwd=SUBMODULE)
    run(["git", "checkout", "--quiet", commit], cwd=SUBMODULE)
    return (SUBMODULE / "train_network.py").is_file()


def install_gpu_extras(pip: list[str], constraints: str) -> None:
    """With CUDA (as the installed torch sees it): bitsandbytes for AdamW8bit, and xformers only as a prebuilt wheel
    whose requirements accept the installed torch (each xformers release pins one torch; never build one)."""
    probe = subprocess.run([sys.executable, "-c", CUDA_PROBE], text=True, capture_output=True)
    cuda, _, torch_version = probe.stdout.strip().partition(" ")
    if probe.returncode != 0 or cuda != "True":
        print("no CUDA GPU visible to torch: the GPU extras (bitsandbytes for AdamW8bit, xformers) are not added")
        return
    run([*pip, "bitsandbytes", "-c", constraints])
    if run([*pip, "--only-binary", "xformers", "xformers", "-c", constraints], check=False).returncode != 0:
        print(f"no xformers wheel accepts torch {torch_version}: skipped (`onetwo train` uses sdpa instead)",
              file=sys.stderr)


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--torch", default=DEFAULT_TORCH, help=f"torch requirement(s) (default: {DEFAULT_TORCH})")
    options.add_argument("--skip-submodule", action="store_true", help="use an existing sd-scripts checkout")
    args = options.parse_args()
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    have_sd_scripts = args.skip_submodule or init_submodule()
    run([*pip, *args.torch.split()])
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze"], check=True, text=True, capture_output=True).stdout
    pins = [line for line in frozen.splitlines() if line.lower().startswith(TORCH_FAMILY)]
    with tempfile.NamedTemporaryFile("w", suffix="-constraints.txt", delete=False) as constraints:
        constraints.write("\n".join(pins) + "\n")
    if have_sd_scripts:
        run([*pip, "-r", "requirements.txt", "-c", constraints.name], cwd=SUBMODULE)
    run([*pip, *EXTRA, "-c", constraints.name])
    install_gpu_extras(pip, constraints.name)
    Path(constraints.name).unlink()
    if not have_sd_scripts:
        print("sd-scripts is missing: its tests will be skipped and `onetwo train` cannot run.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
