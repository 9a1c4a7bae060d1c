"""`[samples] seeds`, the prompt groups eval reads back, and the promise that check and training never import
eval's dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from onetwo.data.scan import scan_project
from onetwo.kohya.buckets import BucketSettings
from onetwo.kohya.render import sample_prompt_groups, sample_prompts
from onetwo.project.file import load_project

NAMES = ["aoi", "midori", "murasaki"]


def test_seeds_repeat_each_prompt_with_consecutive_seeds(make_project) -> None:
    project = load_project(make_project(NAMES, samples={"seeds": 3, "seed": 7}))
    lines = sample_prompts(project, scan_project(project), BucketSettings((640, 640))).splitlines()
    groups = sample_prompt_groups(project, scan_project(project))
    assert len(lines) == 3 * (3 + 6) == 3 * len(groups)
    assert [line.rsplit("--d ", 1)[1] for line in lines[:6]] == ["7", "8", "9", "7", "8", "9"]
    assert [line.split(" --")[0] for line in lines[::3]] == [prompt for _, prompt in groups]
    assert groups[0][0] == ("aoi",) and groups[3][0] == ("aoi", "midori")


def test_seeds_must_be_positive(make_project, cli) -> None:
    make_project(NAMES, samples={"seeds": 0})
    code, _, err = cli("check")
    assert code == 2 and "samples.seeds" in err


def test_check_and_the_cli_never_import_the_eval_dependencies() -> None:
    code = ("import sys; import onetwo.cli, onetwo.stages; "
            "print(sorted(m for m in ('onnxruntime', 'huggingface_hub', 'onetwo.eval.run', 'onetwo.eval.seam') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.stdout.strip() == "[]"


def test_escaped_names_in_the_prompts_file_still_name_their_characters() -> None:
    from onetwo.data.captions import prompt_escape
    from onetwo.eval.samples import characters_of_prompt

    names = ["rin_(fate)", "saber"]
    pair = "rin_(fate)/saber/COMPOSITE, 1girl, 1girl"
    groups = [(("rin_(fate)", "saber"), pair), (("rin_(fate)",), "rin_(fate), red hair")]
    assert characters_of_prompt(prompt_escape(pair), groups, names) == ("rin_(fate)", "saber")
    assert characters_of_prompt(prompt_escape("rin_(fate), red hair"), groups, names) == ("rin_(fate)",)
    assert characters_of_prompt(prompt_escape("saber/rin_(fate)/COMPOSITE, smile"), groups, names) == (
        "saber", "rin_(fate)")
    assert characters_of_prompt("someone else, smile", groups, names) is None
