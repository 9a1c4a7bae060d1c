"""Runs inside the trainer's Python under `accelerate launch` (that Python may not have onetwo): loads the base model
once the way sd-scripts' trainer loads it, then per LoRA file merges it into the weights the way ComfyUI and
AUTOMATIC1111 do, draws its images with sd-scripts' own sampling code (`train_util.sample_image_inference`, or the
family's own per-prompt function for a trainer without a pipeline: the functions that draw training's samples),
and restores the weights before the next file. The epoch files are split between processes by accelerate's
`PartialState().split_between_processes`.

    python -m accelerate.commands.launch [options] worker.py JOB.json

JOB.json (written by onetwo.sample.run): the sd-scripts checkout, the trainer script, the stage's training config
file, the strength, the progress flag, what the model family's declaration says (the trainer class, the sampling
pipeline and how it takes tokenizers and encoders, or the sampling function, the LoRA prefixes of [unet, *text
encoders]) and, per LoRA file, the images to draw, each with its target PNG, its kohya prompt options and the
sidecar JSON written after the PNG.
Standard library, torch and sd-scripts only.
"""

import contextlib
import importlib
import json
import os
import sys
import tempfile
import time

LOHA = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
LORA = ("lora_down.weight", "lora_up.weight")
RANDOM_INIT = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
               "xavier_normal_")


def write_atomic(path, data):
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def group_modules(tensors):
    grouped = {}
    for key, tensor in tensors.items():
        module, _, name = key.partition(".")
        grouped.setdefault(module, {})[name] = tensor
    return grouped


def delta(factors, shape):
    """The UIs' merge of one module, in float32: m · alpha/dim · ΔW with ΔW = (w1_a @ w1_b) ⊙ (w2_a @ w2_b) for a
    LoHa and up @ down for a LoRA, dim = the rank, alpha = dim where the file has none; reshaped to the weight."""
    if all(name in factors for name in LOHA) and "hada_t1" not in factors:
        w1_a, w1_b, w2_a, w2_b = (factors[name].float() for name in LOHA)
        rank, change = w1_b.shape[0], (w1_a @ w1_b) * (w2_a @ w2_b)
    elif all(name in factors for name in LORA) and "lora_mid.weight" not in factors:
        down, up = factors["lora_down.weight"].float(), factors["lora_up.weight"].float()
        rank, change = down.shape[0], up.flatten(1) @ down.flatten(1)
    else:
        return None
    alpha = float(factors["alpha"]) if "alpha" in factors else float(rank)
    return alpha / rank * change.reshape(shape)


class Merger:
    """Merges one LoRA file at a time into the models' weights; the base weights it changes are put back before the
    next file, so every file is drawn on the untouched base model. They are kept in an unlinked scratch file, not in
    memory: a LoHa on a whole UNet changes most of its weights (8.3 GiB in fp32 of a 2.6 B-parameter UNet), and a
    copy in RAM nearly doubles what drawing on the CPU needs. With `keep_base=False` (the last file) nothing is kept."""

    def __init__(self, roots, scratch_dir=None):
        self.modules = {}
        for prefix, root in roots.items():
            for path, module in root.named_modules():
                if getattr(module, "weight", None) is not None:
                    self.modules[f"{prefix}_{path}".replace(".", "_")] = module
        self.scratch_dir = scratch_dir
        self.base = None  # the scratch file, opened at the first weight kept
        self.kept = {}  # module name → (offset, bytes) of its base weight in the scratch file
        self.changed = []  # the modules holding a merged weight now
        self.lost = False  # a merged weight was not kept: the base cannot be put back

    def close(self):
        if self.base is not None:
            self.base.close()
            self.base = None

    def keep(self, name, weight):
        import torch

        if name in self.kept:  # the base weights never change: each is written once
            return
        if self.base is None:
            # open across merges, closed by close()
            self.base = tempfile.TemporaryFile(prefix=".base-weights-", dir=self.scratch_dir)  # noqa: SIM115
        data = weight.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
        offset = self.base.seek(0, os.SEEK_END)
        self.base.write(data.data)
        self.kept[name] = (offset, data.nbytes)

    def restore(self):
        import torch

        if self.changed and self.lost:
            raise SystemExit("the base weights were not kept, so another LoRA file cannot be merged")
        with torch.no_grad():
            for name in self.changed:
                weight = self.modules[name].weight
                offset, size = self.kept[name]
                data = bytearray(size)
                self.base.seek(offset)
                self.base.readinto(data)
                weight.copy_(torch.frombuffer(data, dtype=torch.uint8).view(weight.dtype).reshape(weight.shape))
        self.changed = []

    def merge(self, file, strength, keep_base=True):
        import torch
        from safetensors.torch import load_file

        self.restore()
        unmatched, unknown, merged = [], [], 0
        with torch.no_grad():
            for name, factors in group_modules(load_file(file)).items():
                module = self.modules.get(name)
                if module is None:
                    unmatched.append(name)
                    continue
                weight = module.weight
                change = delta({key: value.to(weight.device) for key, value in factors.items()}, weight.shape)
                if change is None:
                    unknown.append(f"{name} ({', '.join(sorted(factors))})")
                    continue
                if keep_base:
                    self.keep(name, weight)
                else:
                    self.lost = True
                self.changed.append(name)
                weight.copy_((weight.float() + strength * change).to(weight.dtype))
                merged += 1
        if unknown:
            raise SystemExit(f"{file}: {len(unknown)} module(s) of a kind onetwo cannot merge (LoHa and LoRA only), "
                             f"e.g. {unknown[0]}")
        if not merged:
            raise SystemExit(f"{file}: none of its {len(unmatched)} modules names a layer of this base model")
        return merged, unmatched


@contextlib.contextmanager
def random_init_skipped(skip):
    """Leaves out the random initialisation of the weights the models' constructors fill, for a loader that then
    overwrites every one of them (train_network.py's loader builds the UNet, the VAE and the text encoder and
    loads each strictly; drawing those random numbers is most of its time on the CPU). A TorchFunctionMode, not
    patched torch.nn.init functions: transformers puts those back after each of its own loads."""
    if not skip:
        yield
        return
    import torch
    from torch.overrides import TorchFunctionMode

    skipped = {getattr(torch.nn.init, name) for name in RANDOM_INIT} | {torch.Tensor.uniform_, torch.Tensor.normal_}

    class SkipRandomInit(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in skipped:
                return args[0] if args else kwargs["tensor"]
            return func(*args, **(kwargs or {}))

    with SkipRandomInit():
        yield


def load_args(job):
    sys.path.insert(0, job["sd_scripts"])
    trainer_module = os.path.splitext(os.path.basename(job["train_script"]))[0]
    module = __import__(trainer_module)
    from library import train_util

    parser = module.setup_parser()
    # read_config_from_file parses sys.argv again, as the trainer's __main__ leaves it
    sys.argv = [job["train_script"], "--config_file", job["config_file"]]
    args = train_util.read_config_from_file(parser.parse_args(sys.argv[1:]), parser)
    trainer = getattr(module, job["trainer_class"])()
    return args, trainer


def build(job, args, trainer, state, keep_dir):
    """The base model loaded once, as the trainer loads it, sd-scripts' sampling pipeline over it, and the merger
    (keeping the base weights under `keep_dir`)."""
    import torch
    from accelerate import Accelerator
    from library import strategy_base, train_util

    cpu = state.device.type == "cpu"
    precision = "no" if cpu else (args.mixed_precision or "no")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    if cpu and state.is_main_process:
        print("sample: no CUDA device: drawing on the CPU in fp32, which is slow (a full-size model takes about a "
              "minute an image at 28 steps)", flush=True)
    accelerator = Accelerator(mixed_precision=precision, cpu=cpu)
    tokenize_strategy = trainer.get_tokenize_strategy(args)
    strategy_base.TokenizeStrategy.set_strategy(tokenize_strategy)
    # some pipelines encode prompts through the strategy the trainer sets before its first sample
    strategy_base.TextEncodingStrategy.set_strategy(trainer.get_text_encoding_strategy(args))
    tokenizers = trainer.get_tokenizers(tokenize_strategy)
    with random_init_skipped(job["skip_random_init"]):
        _, text_encoder, vae, unet = trainer.load_target_model(args, dtype, accelerator)
    encoders = text_encoder if isinstance(text_encoder, (list, tuple)) else [text_encoder]
    if unet is None:  # a trainer that loads its denoiser after the text encoders, as train_network.py then does
        # sd-scripts' DiT trainers read args.fp8_scaled there, which their assert_extra_args (it needs the datasets)
        # sets where the parser has no such option
        args.fp8_scaled = getattr(args, "fp8_scaled", False)
        unet, encoders = trainer.load_unet_lazily(args, dtype, accelerator, list(encoders))
    for model in (*encoders, unet):
        model.requires_grad_(False).eval().to(accelerator.device, dtype=dtype)
    vae.requires_grad_(False).eval().to(accelerator.device, dtype=torch.float32 if args.no_half_vae else dtype)
    # the modules a LoRA file may name, by kohya's prefix: each model's module path with "." → "_"
    merger = Merger(dict(zip(job["lora_prefixes"], [unet, *encoders], strict=True)), keep_dir)
    if job["sample_function"]:
        return function_drawer(job, args, accelerator, unet, encoders[0], vae), merger
    module, _, name = job["sample_pipeline"].partition(":")
    Pipeline = getattr(importlib.import_module(module), name)
    tokenizer, encoder = (tokenizers, list(encoders)) if job["pipeline_lists"] else (tokenizers[0], encoders[0])
    pipeline = Pipeline(text_encoder=encoder, vae=vae, unet=unet, tokenizer=tokenizer,
                        scheduler=train_util.get_my_scheduler(sample_sampler=args.sample_sampler,
                                                              v_parameterization=args.v_parameterization),
                        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                        clip_skip=args.clip_skip)
    pipeline.to(accelerator.device)
    # one bar of images, not one of steps per image (a pipeline that is no diffusers pipeline has its bar as an
    # attribute)
    if hasattr(pipeline, "set_progress_bar_config"):
        pipeline.set_progress_bar_config(disable=True)
    else:
        pipeline.progress_bar = lambda steps: steps

    def draw(scratch, prompt, epoch):
        train_util.sample_image_inference(accelerator, args, pipeline, scratch, prompt, epoch, 0, None)

    return draw, merger


def function_drawer(job, args, accelerator, model, text_encoder, vae):
    """Drawing with sd-scripts' per-prompt sampling function of a trainer that has no pipeline, called as that
    trainer's own sample_images calls it (no gradients, accelerate's autocast, block swap for inference)."""
    import torch
    from library import strategy_base

    module, _, name = job["sample_function"].partition(":")
    function = getattr(importlib.import_module(module), name)
    tokenize_strategy = strategy_base.TokenizeStrategy.get_strategy()
    encoding_strategy = strategy_base.TextEncodingStrategy.get_strategy()
    if hasattr(model, "switch_block_swap_for_inference"):
        model.switch_block_swap_for_inference()

    def draw(scratch, prompt, epoch):
        if hasattr(model, "prepare_block_swap_before_forward"):
            model.prepare_block_swap_before_forward()
        with torch.no_grad(), accelerator.autocast():
            function(accelerator, args, model, text_encoder, vae, tokenize_strategy, encoding_strategy, scratch,
                     prompt, epoch, 0, None, None)

    return draw


def draw_one(draw, image, scratch):
    """One image drawn by sd-scripts' own sampling code into a scratch folder, then renamed into place: the PNG
    appears whole, and its sidecar after it."""
    for name in os.listdir(scratch):
        os.unlink(os.path.join(scratch, name))
    prompt = {"prompt": image["prompt"], "negative_prompt": image["negative_prompt"], "width": image["width"],
              "height": image["height"], "sample_steps": image["steps"], "scale": image["scale"],
              "seed": image["seed"], "sample_sampler": image["sampler"], "enum": image["prompt_index"]}
    draw(scratch, prompt, image["epoch"])
    (drawn,) = [name for name in os.listdir(scratch) if name.endswith(".png")]
    os.replace(os.path.join(scratch, drawn), image["png"])
    write_atomic(image["sidecar_file"], (json.dumps(image["sidecar"], indent=1, ensure_ascii=False) + "\n")
                 .encode("utf-8"))


def main(argv):
    with open(argv[0], encoding="utf-8") as handle:
        job = json.load(handle)
    import logging

    from accelerate import PartialState
    from tqdm import tqdm

    state = PartialState()
    args, trainer = load_args(job)
    logging.getLogger("library.train_util").setLevel(logging.WARNING)  # one line per image setting otherwise
    started = time.monotonic()
    # the base weights go beside the job file, not into the samples folder
    draw, merger = build(job, args, trainer, state, os.path.dirname(os.path.abspath(argv[0])))
    print(f"sample: process {state.process_index}: base model loaded in {time.monotonic() - started:.1f} s",
          flush=True)
    with state.split_between_processes(job["files"]) as files:
        total = sum(len(entry["images"]) for entry in files)
        bar = tqdm(total=total, unit="img", desc=f"sample [{state.process_index}]", position=state.process_index,
                   disable=not job["progress"])
        scratch = tempfile.mkdtemp(prefix=".drawing-", dir=job["out_dir"])
        try:
            for index, entry in enumerate(files):
                # the base is put back only for a next file: for a process's last file nothing is kept
                merged, unmatched = merger.merge(entry["path"], job["strength"], keep_base=index < len(files) - 1)
                skipped = f"; {len(unmatched)} name no layer, e.g. {unmatched[0]}" if unmatched else ""
                print(f"sample: process {state.process_index}: {os.path.basename(entry['path'])}: merged {merged} "
                      f"modules at strength {job['strength']:g}{skipped}", flush=True)
                for image in entry["images"]:
                    draw_one(draw, image, scratch)
                    bar.update(1)
        finally:
            bar.close()
            merger.close()
            with contextlib.suppress(OSError):
                for name in os.listdir(scratch):
                    os.unlink(os.path.join(scratch, name))
                os.rmdir(scratch)
    state.wait_for_everyone()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
