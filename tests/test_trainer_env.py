"""issue 9.1: train with the Python that has the trainer. Which Python is picked (and said), and what its probe finds:
each probe below runs for real, in a subprocess of a real Python (venvs built here: tests/venvs.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w

from onetwo.kohya.render import read_toml
from onetwo.trainer.needs import LaunchPython as Launch
from onetwo.trainer.needs import Probe, needs, optimizer_module, problems_for, sdpa_switch
from onetwo.trainer.python import cache_file_for, cached_probe, choose_python, run_probe
from tests.conftest import line_naming, make_character, missing_facts, project_data
from tests.model_files import SD1_KEYS, write_safetensors
from tests.venvs import bare_venv, venv_without

HAS_TRAINER = all(importlib.util.find_spec(name) for name in ("torch", "accelerate", "lycoris"))
needs_trainer = pytest.mark.skipif(not HAS_TRAINER, reason="torch, accelerate or lycoris-lora is not installed in "
                                   f"{sys.executable}: run `make setup`")
# What a user without a GPU writes in the project file (tests/sdscripts.py has the same for the e2e test).
CPU_TRAINING = {"xformers": False, "sdpa": True, "optimizer_type": "AdamW", "mixed_precision": "no"}
MakeProject = Callable[..., Path]


@pytest.fixture(scope="module")
def kohya_ss(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kohya_ss install as its setup leaves it: venv/ at the root, sd-scripts/ inside (here a bare venv)."""
    root = tmp_path_factory.mktemp("install") / "kohya_ss"
    (root / "sd-scripts" / "networks").mkdir(parents=True)
    (root / "sd-scripts" / "train_network.py").write_text("raise SystemExit('not run in these tests')\n")
    (root / "sd-scripts" / "networks" / "lora.py").write_text("")
    bare_venv(root / "venv")
    return root


@pytest.fixture(scope="module")
def without_accelerate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kohya-style venv with torch and the rest, but no accelerate."""
    return venv_without(tmp_path_factory.mktemp("noacc") / "venv", ["accelerate"])


@pytest.fixture(scope="module")
def without_xformers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state `make setup` leaves: everything but xformers (made certain here even where it is installed)."""
    return venv_without(tmp_path_factory.mktemp("noxf") / "venv", ["xformers"])


def test_the_setting_wins_then_the_environment_then_onetwo_then_the_checkout_venv(kohya_ss: Path,
                                                                                   tmp_path: Path) -> None:
    sd_scripts = kohya_ss / "sd-scripts"
    kohya_python = str(kohya_ss / "venv" / "bin" / "python")
    env = {"ONETWO_PYTHON": "/opt/py/bin/python"}
    assert choose_python("/srv/py", sd_scripts, env, "/own", True) == Launch("/srv/py", "project.python")
    assert choose_python(None, sd_scripts, env, "/own", True) == Launch("/opt/py/bin/python", "$ONETWO_PYTHON")
    assert choose_python(None, sd_scripts, {}, "/own", True).path == "/own"
    picked = choose_python(None, sd_scripts, {}, "/own", False)
    assert picked.path == kohya_python and "onetwo's own Python lacks accelerate or torch" in picked.why
    # The checkout's own venv comes before its parent's, and Windows venvs are found too.
    own = tmp_path / "sd-scripts"
    (own / "venv" / "Scripts").mkdir(parents=True)
    (own / "venv" / "Scripts" / "python.exe").write_bytes(b"")
    assert choose_python(None, own, {}, "/own", False).path == str(own / "venv" / "Scripts" / "python.exe")
    lonely = choose_python(None, tmp_path / "nowhere" / "sd-scripts", {}, "/own", False)
    assert lonely.path == "/own" and "no venv found for the sd-scripts checkout" in lonely.why


def test_a_bare_command_name_is_looked_up_on_path(tmp_path: Path) -> None:
    assert choose_python("sh", tmp_path, {}).path == subprocess.run(["which", "sh"], capture_output=True,
                                                                    text=True).stdout.strip()


@pytest.mark.parametrize(("settings", "module"), [
    ({"optimizer_type": "AdamW8bit"}, "bitsandbytes"), ({"optimizer_type": "PagedAdamW"}, "bitsandbytes"),
    ({"optimizer_type": "PagedAdamW32bit"}, "bitsandbytes"), ({"optimizer_type": "Lion8bit"}, "bitsandbytes"),
    ({"optimizer_type": "AdEMAMix8bit"}, "bitsandbytes"), ({"use_8bit_adam": True}, "bitsandbytes"),
    ({"optimizer_type": "Lion"}, "lion_pytorch"), ({"use_lion_optimizer": True}, "lion_pytorch"),
    ({"optimizer_type": "DAdaptAdam"}, "dadaptation"), ({"optimizer_type": "Prodigy"}, "prodigyopt"),
    ({"optimizer_type": "AdamWScheduleFree"}, "schedulefree"),
    ({"optimizer_type": "came_pytorch.CAME"}, "came_pytorch"),
    ({"optimizer_type": "AdamW"}, None), ({"optimizer_type": "Adafactor"}, None), ({}, None),
    ({"optimizer_type": "SGDNesterov"}, None), ({"optimizer_type": "RMSprop"}, None),
])
def test_the_optimizer_library_as_sd_scripts_picks_it(settings: dict, module: str | None) -> None:
    found = optimizer_module(settings)
    assert (found[0] if found else None) == module


def test_what_a_config_needs_imported() -> None:
    flat = {"network_module": "lycoris.kohya", "optimizer_type": "AdamW8bit", "xformers": True}
    assert [(need.module, need.package) for need in needs(flat)] == [
        ("accelerate", "accelerate"), ("lycoris.kohya", "lycoris-lora"), ("bitsandbytes", "bitsandbytes"),
        ("xformers.ops", "xformers")]
    assert [need.module for need in needs({})] == ["accelerate", "networks.lora"]


def test_the_probe_runs_in_a_subprocess_of_that_python(tmp_path: Path) -> None:
    probe = run_probe(sys.executable, tmp_path, ["json", "no_such_module_here"])
    assert probe.failure is None and probe.data["python"] == sys.executable
    assert probe.module_error("json") is None
    assert probe.module_error("no_such_module_here")["missing"] == "no_such_module_here"
    if importlib.util.find_spec("torch"):
        from importlib.metadata import version

        assert probe.data["torch"].split("+")[0] == version("torch").split("+")[0]
    missing = run_probe(str(tmp_path / "no" / "python"), tmp_path, [])
    assert missing.failure and "cannot be run" in missing.failure


def test_mixed_precision_without_cuda_names_the_cpu_settings() -> None:
    probe = Probe({"torch": "2.5.0", "cuda": False, "modules": {}})
    launch = Launch("/k/venv/bin/python", "project.python")
    problems = problems_for(probe, launch, {"mixed_precision": "bf16", "optimizer_type": "AdamW8bit"}, {},
                            Path("/nowhere"), True)
    (problem,) = problems
    assert not missing_facts(problem, 'mixed_precision = "bf16"', "CUDA GPU", "torch 2.5.0", "/k/venv/bin/python",
                             'mixed_precision = "no" in [training]', "cpu = true in [accelerate]",
                             'optimizer_type = "AdamW" in [training]', '"AdamW8bit"', "bitsandbytes"), problem
    on_gpu = Probe({"torch": "2.5.0", "cuda": True, "modules": {}})
    assert problems_for(on_gpu, launch, {"mixed_precision": "fp16"}, {}, Path("/nowhere"), True) == []
    forced = problems_for(on_gpu, launch, {"mixed_precision": "fp16"}, {"cpu": True}, Path("/nowhere"), True)
    assert forced and "but [accelerate] cpu = true" in forced[0]


# --- through the CLI ------------------------------------------------------------------------------------------


def cpu_project(make_project: MakeProject, tmp_path: Path, **project: object) -> Path:
    write_safetensors(tmp_path / "model.safetensors", SD1_KEYS)
    return make_project(project=project, training=CPU_TRAINING, accelerate={"cpu": True})


def test_a_python_without_torch_is_named_with_the_fix(make_project: MakeProject, cli, kohya_ss: Path,
                                                      tmp_path: Path) -> None:
    python = kohya_ss / "venv" / "bin" / "python"
    cpu_project(make_project, tmp_path, python=str(python))
    code, _, err = cli("check")
    assert code == 2
    assert f"trainer Python: {python} (project.python)" in err
    torch = line_naming(err, "No module named 'torch'")
    assert not missing_facts(torch, f"  - {python}: ", f"`{python} -m pip install torch torchvision`"), torch


@pytest.mark.sdscripts
@needs_trainer
def test_missing_accelerate_stops_train_before_launch(make_project: MakeProject, cli, without_accelerate: Path,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_project(make_project, tmp_path)
    monkeypatch.setenv("ONETWO_PYTHON", str(without_accelerate))
    code, _, err = cli("train", "stage1")
    assert code == 2
    assert f"trainer Python: {without_accelerate} ($ONETWO_PYTHON); Python " in err
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    (problem,) = problems
    assert not missing_facts(problem, f"  - {without_accelerate}: ", "`accelerate launch`",
                             f"`{without_accelerate} -m pip install accelerate`", "project.python", "ONETWO_PYTHON")
    assert "exited with code" not in err and not (tmp_path / "work" / "stage1" / "train.log").exists()


@pytest.mark.sdscripts
@needs_trainer
def test_fp16_on_a_cpu_is_an_error(make_project: MakeProject, cli, tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", SD1_KEYS)
    make_project(accelerate={"cpu": True})  # the shipped templates: fp16, AdamW8bit, xformers
    code, _, err = cli("check")
    assert code == 2
    problem = line_naming(err, 'mixed_precision = "fp16"')
    assert not missing_facts(problem, "CUDA GPU", "[accelerate] cpu = true", 'mixed_precision = "no" in [training]',
                             'optimizer_type = "AdamW" in [training]'), problem


@pytest.mark.sdscripts
@needs_trainer
def test_no_xformers_trains_with_sdpa_and_says_so(make_project: MakeProject, cli, without_xformers: Path,
                                                  tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", SD1_KEYS)
    make_project(project={"python": str(without_xformers)}, training={**CPU_TRAINING, "xformers": True,
                                                                     "sdpa": False}, accelerate={"cpu": True})
    code, out, err = cli("train", "stage1", "--dry-run")
    assert code == 0, err
    switch = line_naming(err, "No module named 'xformers'")
    assert not missing_facts(switch, "xformers = true", str(without_xformers), "sdpa = true"), switch
    config = read_toml(tmp_path / "work" / "stage1" / "config.toml")
    flat = {key: value for section in config.values() for key, value in section.items()}
    assert (flat["xformers"], flat["sdpa"]) == (False, True)
    assert out.startswith(f"{without_xformers} -m accelerate.commands.launch ")


@pytest.mark.sdscripts
@needs_trainer
def test_attention_fallback_false_makes_missing_xformers_an_error(make_project: MakeProject, cli,
                                                                  without_xformers: Path, tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", SD1_KEYS)
    make_project(project={"python": str(without_xformers), "attention_fallback": False},
                 training={**CPU_TRAINING, "xformers": True, "sdpa": False}, accelerate={"cpu": True})
    code, _, err = cli("train", "stage1")
    assert code == 2
    assert f"  - xformers = true, but {without_xformers} cannot import xformers" in err
    assert f"`{without_xformers} -m pip install xformers`" in err and "sdpa = true instead" not in err
    config = read_toml(tmp_path / "work" / "stage1" / "config.toml")
    assert {key: value for section in config.values() for key, value in section.items()}["xformers"] is True


def test_a_kohya_ss_venv_is_picked_when_onetwo_lacks_the_trainer(kohya_ss: Path, tmp_path: Path) -> None:
    """The issue's scenario: `ONETWO_SD_SCRIPTS=/opt/kohya_ss/sd-scripts onetwo check`, onetwo installed in a Python
    without accelerate or torch: kohya_ss/venv is picked, said aloud, and probed."""
    onetwo_python = venv_without(tmp_path / "onetwo-venv", ["accelerate", "torch"])
    for index, name in enumerate(["alice", "bob"]):
        make_character(tmp_path / "data" / name, index)
    write_safetensors(tmp_path / "model.safetensors", SD1_KEYS)
    data = project_data(["alice", "bob"], training=CPU_TRAINING, accelerate={"cpu": True})
    (tmp_path / "onetwo.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key not in ("ONETWO_PYTHON", "ONETWO_PROJECT")}
    env["ONETWO_SD_SCRIPTS"] = str(kohya_ss / "sd-scripts")
    done = subprocess.run([str(onetwo_python), "-m", "onetwo", "check", "--no-progress"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    kohya_python = kohya_ss / "venv" / "bin" / "python"
    assert done.returncode == 2, done.stderr
    picked = line_naming(done.stderr, f"trainer Python: {kohya_python} ")
    assert not missing_facts(picked, "sd-scripts checkout", "accelerate", "torch"), picked
    assert f"`{kohya_python} -m pip install torch torchvision`" in done.stderr


def test_the_network_module_of_the_checkout_is_imported_from_it(kohya_ss: Path) -> None:
    """networks.lora lives in the sd-scripts checkout, not in site-packages: the probe imports it from there."""
    python = str(kohya_ss / "venv" / "bin" / "python")
    probe = run_probe(python, kohya_ss / "sd-scripts", ["networks.lora", "networks.no_such_network"])
    assert probe.module_error("networks.lora") is None
    assert probe.module_error("networks.no_such_network")["missing"] == "networks.no_such_network"
    # The same answer from a Python that has torch and accelerate (this one has neither): the problem's wording.
    with_torch = Probe({"torch": "2.5.0", "cuda": True, "modules": {
        "accelerate": None, "networks.no_such_network": probe.module_error("networks.no_such_network")}})
    problems = problems_for(with_torch, Launch(python, "project.python"),
                            {"network_module": "networks.no_such_network"}, {}, kohya_ss / "sd-scripts", True)
    assert any(f'network_module = "networks.no_such_network": {kohya_ss / "sd-scripts"} has no '
               "networks.no_such_network" in problem for problem in problems)


def test_the_answer_is_kept_while_that_python_and_its_packages_are_unchanged(tmp_path: Path) -> None:
    python = str(bare_venv(tmp_path / "venv"))
    cache_dir = tmp_path / "cache"
    cache = cache_file_for(cache_dir, python)
    checkout, other_checkout = tmp_path / "sd-scripts", tmp_path / "other-sd-scripts"
    (checkout / "networks").mkdir(parents=True)
    (checkout / "networks" / "lora.py").write_text("")

    def probe(modules: list[str], sd_scripts: Path = checkout) -> dict:
        return cached_probe(python, sd_scripts, modules, cache).data

    def mark() -> None:  # a reused answer comes back exactly as kept
        entry = json.loads(cache.read_text(encoding="utf-8"))
        entry["data"]["version"] = "kept"
        cache.write_text(json.dumps(entry), encoding="utf-8")

    assert probe(["json", "networks.lora"])["modules"] == {"json": None, "networks.lora": None}
    mark()
    assert probe(["json"])["version"] == "kept"
    assert probe(["json"], other_checkout)["version"] == "kept"  # nothing asked of the checkout itself
    answer = probe(["networks.lora"], other_checkout)  # the other checkout has no networks/: asked again
    assert answer["version"] != "kept" and answer["modules"]["networks.lora"]["missing"] == "networks"
    mark()
    assert probe(["json", "csv"], other_checkout)["version"] != "kept"  # asks for more
    mark()
    site_packages = next(Path(entry) for entry in json.loads(cache.read_text())["data"]["path"]
                         if entry.endswith("site-packages"))
    (site_packages / "newly_installed.py").write_text("")  # what a pip install does to the folder
    assert probe(["json"], other_checkout)["version"] != "kept"
    # Answers for Pythons that are gone are dropped when a new answer is kept.
    gone = cache_dir / "0123.json"
    gone.write_text(json.dumps({"fingerprint": {"python": str(tmp_path / "deleted" / "python")}}), encoding="utf-8")
    probe(["csv", "json", "networks.lora"])
    assert not gone.exists() and cache.exists()


def test_xformers_without_cuda_switches_too_and_the_setting_refuses() -> None:
    launch = Launch("/k/venv/bin/python", "project.python")
    flat = {"xformers": True, "mixed_precision": "no"}
    importable_no_gpu = Probe({"torch": "2.5.0", "cuda": False, "modules": {"xformers.ops": None}})
    assert problems_for(importable_no_gpu, launch, flat, {}, Path("/nowhere"), True) == []
    note = sdpa_switch(importable_no_gpu, flat, launch.path, True)
    assert note and note.startswith("xformers = true, but xformers needs a CUDA GPU: training with sdpa = true instead")
    assert "project.attention_fallback = false" in note
    refused = problems_for(importable_no_gpu, launch, flat, {}, Path("/nowhere"), False)
    assert refused[0].startswith("xformers = true, but xformers needs a CUDA GPU; set xformers = false and sdpa = "
                                 "true in [training]")
    assert sdpa_switch(importable_no_gpu, flat, launch.path, False) is None
    on_gpu = Probe({"torch": "2.5.0", "cuda": True, "modules": {"xformers.ops": None}})
    assert problems_for(on_gpu, launch, flat, {}, Path("/nowhere"), True) == []
    assert sdpa_switch(on_gpu, flat, launch.path, True) is None
    # Without torch the probe cannot tell: the config keeps xformers, and nothing is said about sdpa.
    no_torch = Probe({"torch": None, "modules": {"xformers.ops": {"error": "ModuleNotFoundError", "missing": "torch"}}})
    assert sdpa_switch(no_torch, flat, launch.path, True) is None


def test_a_python_that_is_not_there_is_named_with_its_setting(make_project: MakeProject, cli,
                                                              tmp_path: Path) -> None:
    cpu_project(make_project, tmp_path, python="venv/bin/python")  # relative to the project file
    code, _, err = cli("check")
    assert code == 2
    problem = line_naming(err, f"  - {tmp_path / 'venv' / 'bin' / 'python'} ")
    assert not missing_facts(problem, "project.python", "No such file or directory", "ONETWO_PYTHON"), problem
