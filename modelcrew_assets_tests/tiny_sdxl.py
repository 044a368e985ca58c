"""A tiny SDXL pipeline with random weights, built from configs (no hub download), and a LoRA trained on it
with peft and written in the key format kohya's networks/lora.py saves for SDXL.

Shape of SDXL kept where the worker's code depends on it: two CLIP text encoders (the second with a
projection), a UNet with SDXL's `text_time` added conditioning and down/up blocks whose attentions kohya names
input_blocks / middle_block / output_blocks, an AutoencoderKL that downsamples 8x. Everything else is small
enough that a 256x256 render at 4 steps takes about a second on one CPU thread.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

# UNet layout: down/up block pairs, resnet layers per down block (kohya's SGM indices depend on it).
BLOCK_CHANNELS = (32, 64)
LAYERS_PER_BLOCK = 2
TEXT_HIDDEN = 32  # per text encoder; the UNet cross-attends to both, concatenated
TEXT_PROJECTION = 32  # text_encoder_2's pooled projection: part of SDXL's text_time embedding
TIME_EMBED_DIM = 8  # per add_time_id; SDXL passes 6 of them (original size, crop, target size)
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def build_tiny_sdxl(folder: Path, seed: int = 0) -> Path:
    """Write a StableDiffusionXLPipeline with random weights into `folder` (save_pretrained layout)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=LAYERS_PER_BLOCK,
        block_out_channels=BLOCK_CHANNELS, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4), use_linear_projection=True,
        cross_attention_dim=2 * TEXT_HIDDEN, addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM, projection_class_embeddings_input_dim=6 * TIME_EMBED_DIM + TEXT_PROJECTION,
        transformer_layers_per_block=1, norm_num_groups=16,
    )  # fmt: skip
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=8, sample_size=256,
    )  # fmt: skip
    tokenizer = _byte_level_clip_tokenizer(folder / "_tokenizer_files", CLIPTokenizer)
    text_config = {
        "vocab_size": len(tokenizer), "hidden_size": TEXT_HIDDEN, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id, "hidden_act": "gelu",
    }  # fmt: skip
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**text_config, projection_dim=TEXT_PROJECTION))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    pipeline = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
    )  # fmt: skip
    target = folder / "tiny-sdxl"
    pipeline.save_pretrained(target)
    return target


def _byte_level_clip_tokenizer(folder: Path, tokenizer_class):
    """CLIP's BPE with its byte alphabet and no merges: every word splits into characters, as CLIP's
    tokenizer does for words outside its merges. Built here so no vocabulary is downloaded."""
    alphabet = _byte_alphabet()
    tokens = alphabet + [symbol + "</w>" for symbol in alphabet] + list(SPECIAL_TOKENS)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": SPECIAL_TOKENS[0], "eos_token": SPECIAL_TOKENS[1], "pad_token": SPECIAL_TOKENS[1],
                    "unk_token": SPECIAL_TOKENS[1], "model_max_length": 77})
    )  # fmt: skip
    return tokenizer_class.from_pretrained(folder)


def _byte_alphabet() -> list[str]:
    """GPT-2's reversible byte -> printable character table, which CLIP's BPE works on."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    extra = iter(range(256, 512))
    return [chr(byte if byte in printable else next(extra)) for byte in range(256)]


def train_kohya_lora(pipeline_folder: Path, out: Path, steps: int = 6, rank: int = 4, alpha: float = 4.0) -> Path:
    """Train a LoRA on the UNet and both text encoders for a few denoising steps (peft, CPU) and save it
    as kohya does: `lora_unet_<SGM module path>`, `lora_te1_` / `lora_te2_` + the CLIP module path, '.'
    as '_', each with lora_down.weight, lora_up.weight and alpha."""
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(1)
    pipe = StableDiffusionXLPipeline.from_pretrained(pipeline_folder, torch_dtype=torch.float32)
    # kohya's targets: Linear/1x1 Conv in the UNet's transformers; CLIP attention and MLP projections.
    unet_targets = r".*attentions\.\d+\.(proj_in|proj_out|transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.(0\.proj|2)))"
    text_targets = r".*layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.(fc1|fc2))"
    models = {"unet": pipe.unet, "te1": pipe.text_encoder, "te2": pipe.text_encoder_2}
    for name, model in models.items():
        targets = unet_targets if name == "unet" else text_targets
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights="gaussian")
        inject_adapter_in_model(config, model)
        for parameter_name, parameter in model.named_parameters():
            parameter.requires_grad_("lora_" in parameter_name)
    trainable = [p for model in models.values() for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=5e-2)
    latents = torch.randn(1, 4, 32, 32)
    add_time_ids = torch.tensor([[256.0, 256.0, 0.0, 0.0, 256.0, 256.0]])
    for _ in range(steps):
        embeds, _, pooled, _ = pipe.encode_prompt("a photo of sks person", do_classifier_free_guidance=False)
        noise = torch.randn_like(latents)
        timestep = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (1,))
        noisy = pipe.scheduler.add_noise(latents, noise, timestep)
        predicted = pipe.unet(
            noisy, timestep, encoder_hidden_states=embeds,
            added_cond_kwargs={"text_embeds": pooled, "time_ids": add_time_ids},
        ).sample  # fmt: skip
        loss = torch.nn.functional.mse_loss(predicted, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    weights = {}
    for prefix, model in (("lora_unet", pipe.unet), ("lora_te1", pipe.text_encoder), ("lora_te2", pipe.text_encoder_2)):
        weights.update(_kohya_weights(prefix, model, alpha))
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "ss_network_dim": str(rank),
        "ss_network_alpha": f"{alpha:g}",
        "ss_steps": str(steps),
    }
    save_file(weights, out, metadata=metadata)
    return out


def _kohya_weights(prefix: str, model: torch.nn.Module, alpha: float) -> dict[str, torch.Tensor]:
    from peft.tuners.lora import LoraLayer

    weights = {}
    for module_name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        path = sgm_module_path(module_name) if prefix == "lora_unet" else clip_module_path(module_name)
        name = f"{prefix}_{path.replace('.', '_')}"
        weights[f"{name}.lora_down.weight"] = module.lora_A["default"].weight.detach().contiguous()
        weights[f"{name}.lora_up.weight"] = module.lora_B["default"].weight.detach().contiguous()
        weights[f"{name}.alpha"] = torch.tensor(alpha)
    return weights


def clip_module_path(path: str) -> str:
    """CLIP paths as kohya saves them: under text_model (transformers 5's CLIPTextModel drops that level)."""
    return path if path.startswith("text_model.") else f"text_model.{path}"


def sgm_module_path(diffusers_path: str) -> str:
    """A diffusers UNet attention path in the original SDXL (SGM) numbering that kohya's UNet uses:
    input_blocks.0 is conv_in, each down block holds its layers then its downsampler, each up block one
    layer more than a down block, the attention is the second module of its input/output block."""
    found = re.match(r"(down_blocks|up_blocks)\.(\d+)\.attentions\.(\d+)\.(.*)", diffusers_path)
    if found:
        kind, block, layer, rest = (found.group(1), int(found.group(2)), int(found.group(3)), found.group(4))
        if kind == "down_blocks":
            return f"input_blocks.{1 + block * (LAYERS_PER_BLOCK + 1) + layer}.1.{rest}"
        return f"output_blocks.{block * (LAYERS_PER_BLOCK + 1) + layer}.1.{rest}"
    found = re.match(r"mid_block\.attentions\.0\.(.*)", diffusers_path)
    if found:
        return f"middle_block.1.{found.group(1)}"
    raise ValueError(f"{diffusers_path} is not an attention of the UNet's down, mid or up blocks")
