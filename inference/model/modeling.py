"""The video-SALMONN-o1 model, built from upstream transformers blocks.

    frames (F,3,384,384) -> SigLIP (last layer dropped) -> (F,729,Cv) -> 2x2 max-pool (F,169,Cv)
        -> mlp2x_gelu projector (F,169,D) -> + image_newline after each of 13 rows -> (F,182,D)
    log-mel (C,128,3000) -> Whisper encoder (C,1500,Cw) -> ln_speech -> 0.2 s windows
        (C*150,10,Cw) -> Q-Former, 1 query each -> speech_llama_proj -> final_linear
        -> + sinusoidal segment position per 30 s chunk -> (C*150,D)
    interleave: per frame [182 visual tokens][its share of the audio tokens] -> AV block (L,D)
    prompt ids with one -200 placeholder -> embeddings with the AV block spliced in -> Qwen2

Module and parameter names are chosen so that the official checkpoint loads by a fixed
renaming (``official_to_port_key``), never by guesswork. The model only ever receives tensors:
media decoding lives in ``inference.media``, prompt ids in ``inference.model.prompts``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    Blip2QFormerConfig,
    Blip2QFormerModel,
    Qwen2ForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
    WhisperConfig,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from inference.model.config import ConnectorSettings
from inference.model.layout import AV_PLACEHOLDER_ID, WHISPER_FRAMES_PER_SECOND, AVLayout, av_layout


class PlaceholderMismatchError(ValueError):
    """The prompt's AV placeholders and the media features do not line up."""


@dataclass
class EncodedMedia:
    """What the encoders made of one clip, ready to splice into a prompt."""

    av_block: torch.Tensor  # (L, D) in the LLM's embedding dtype
    layout: AVLayout


def sinusoidal_segment_table(max_len: int, dim: int) -> torch.Tensor:
    """(max_len + 1, dim) table whose row 0 is zeros, so chunk 0 gets no offset and chunk k
    gets the encoding of position k-1 (videosalmonno1.py:310-316). Computed in float32."""
    position = torch.arange(0, max_len, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32) * -(torch.log(torch.tensor(10000.0)) / dim)
    )
    table = torch.zeros((max_len + 1, dim))
    table[1:, 0::2] = torch.sin(position * div_term)
    table[1:, 1::2] = torch.cos(position * div_term)
    return table


class VideoSalmonnO1(nn.Module):
    """The whole model. ``llm`` is a plain ``Qwen2ForCausalLM`` (so bitsandbytes and peft treat
    it as they treat any Qwen2); the encoders and connectors sit beside it."""

    def __init__(
        self,
        llm: Qwen2ForCausalLM | nn.Module,
        vision_config: dict,
        whisper_config: dict,
        qformer_config: dict,
        mm_hidden_size: int,
        hidden_size: int,
        connector: ConnectorSettings = ConnectorSettings(),
    ) -> None:
        super().__init__()
        self.connector = connector
        self.llm = llm  # the loader may attach the (quantized) LLM after building the rest
        hidden = hidden_size

        # SigLIP: the official tower loads all layers, then deletes the last one
        # (siglip_encoder_flash.py:835); we build the kept layers only.
        vcfg = dict(vision_config)
        vcfg["num_hidden_layers"] = vcfg["num_hidden_layers"] - 1
        self.vision_tower = SiglipVisionModel(SiglipVisionConfig(**vcfg, vision_use_head=False))
        self.patches_per_side = vcfg["image_size"] // vcfg["patch_size"]  # 27
        self.mm_projector = nn.Sequential(
            nn.Linear(mm_hidden_size, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.image_newline = nn.Parameter(torch.zeros(hidden))

        wcfg = WhisperConfig(**whisper_config)
        self.speech_encoder = WhisperEncoder(wcfg)
        self.ln_speech = nn.LayerNorm(wcfg.d_model)
        qcfg = Blip2QFormerConfig(
            hidden_size=qformer_config["hidden_size"],
            num_attention_heads=qformer_config["num_attention_heads"],
            intermediate_size=qformer_config["intermediate_size"],
            hidden_act=qformer_config.get("hidden_act", "gelu"),
            layer_norm_eps=qformer_config.get("layer_norm_eps", 1e-12),
            hidden_dropout_prob=qformer_config.get("hidden_dropout_prob", 0.1),
            attention_probs_dropout_prob=qformer_config.get("attention_probs_dropout_prob", 0.1),
            max_position_embeddings=qformer_config.get("max_position_embeddings", 512),
            num_hidden_layers=connector.qformer_layers,
            cross_attention_frequency=1,
            encoder_hidden_size=wcfg.d_model,
        )
        self.speech_Qformer = Blip2QFormerModel(qcfg)
        self.speech_query_tokens = nn.Parameter(torch.zeros(1, connector.speech_queries, qcfg.hidden_size))
        self.speech_llama_proj = nn.Linear(qcfg.hidden_size, hidden)
        self.final_linear = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.register_buffer(
            "segment_table", sinusoidal_segment_table(connector.max_audio_chunks, hidden), persistent=False
        )

    # ---- devices and dtypes -------------------------------------------------------------
    @property
    def encoder_device(self) -> torch.device:
        return self.image_newline.device

    @property
    def encoder_dtype(self) -> torch.dtype:
        return self.image_newline.dtype

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.llm.get_input_embeddings()

    # ---- vision ----------------------------------------------------------------------------
    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(F,3,384,384) -> (F,729,Cv): the last kept layer's hidden state, before
        post_layernorm (the official features are hidden_states[-1] of the truncated tower)."""
        hidden = self.vision_tower.embeddings(pixel_values)
        return self.vision_tower.encoder(inputs_embeds=hidden).last_hidden_state

    def project_frames(self, features: torch.Tensor) -> torch.Tensor:
        """(F,729,Cv) -> (F,169,D): 2x2 max-pool BEFORE the projector (llava_arch.py:171)."""
        n_frames, _, channels = features.shape
        side = self.patches_per_side
        grid = features.view(n_frames, side, side, channels).permute(0, 3, 1, 2)
        pooled = F.max_pool2d(grid, self.connector.pool_stride)  # (F,Cv,13,13): row/col 26 dropped
        pooled = pooled.permute(0, 2, 3, 1).reshape(n_frames, -1, channels)
        return self.mm_projector(pooled)

    def add_row_newlines(self, projected: torch.Tensor) -> torch.Tensor:
        """(F,169,D) -> (F,182,D): image_newline after each row of 13 ("grid" newline)."""
        n_frames, n_tokens, dim = projected.shape
        side = math.isqrt(n_tokens)
        rows = projected.view(n_frames, side, side, dim)
        newline = self.image_newline.to(projected.dtype).expand(n_frames, side, 1, dim)
        return torch.cat([rows, newline], dim=2).reshape(n_frames, side * (side + 1), dim)

    def encode_frames(self, pixel_values: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """(F,3,384,384) normalised pixels -> (F,182,D) visual tokens, a few frames at a time so
        activation memory does not grow with the clip (60 frames x 729 patches at once would)."""
        pieces = []
        for start in range(0, pixel_values.shape[0], batch_size):
            chunk = pixel_values[start : start + batch_size].to(self.encoder_device, self.encoder_dtype)
            pieces.append(self.project_frames(self.vision_features(chunk)))
        return self.add_row_newlines(torch.cat(pieces, dim=0))

    # ---- audio -----------------------------------------------------------------------------
    def speech_windows(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """(C,128,3000) log-mel -> (C*150,10,Cw): Whisper encoder, ln_speech (on top of
        Whisper's own final LayerNorm), then non-overlapping 0.2 s windows."""
        encoded = self.speech_encoder(spectrogram).last_hidden_state  # (C,1500,Cw)
        encoded = self.ln_speech(encoded)
        kernel, stride = self.connector.whisper_frames_per_window, self.connector.whisper_frames_per_stride
        windows = encoded.unfold(1, kernel, stride)  # (C,150,Cw,10): F.unfold in the official code
        return windows.permute(0, 1, 3, 2).reshape(-1, kernel, encoded.shape[-1])

    def encode_audio(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """(C,128,3000) -> (C*150,D) audio tokens, each chunk offset by its segment position."""
        spectrogram = spectrogram.to(self.encoder_device, self.encoder_dtype)
        n_chunks = spectrogram.shape[0]
        if n_chunks > self.connector.max_audio_chunks:
            raise PlaceholderMismatchError(
                f"{n_chunks} audio chunks exceed the model's {self.connector.max_audio_chunks}"
            )
        windows = self.speech_windows(spectrogram)
        queries = self.speech_query_tokens.expand(windows.shape[0], -1, -1)
        out = self.speech_Qformer(
            query_embeds=queries,
            encoder_hidden_states=windows,
            encoder_attention_mask=torch.ones(windows.shape[:-1], dtype=torch.long, device=windows.device),
        ).last_hidden_state  # (C*150,1,Dq)
        tokens = self.final_linear(self.speech_llama_proj(out))  # (C*150,1,D)
        tokens = tokens.view(n_chunks, -1, tokens.shape[-1])
        tokens = tokens + self.segment_table[:n_chunks].to(tokens.dtype).unsqueeze(1)
        return tokens.reshape(-1, tokens.shape[-1])

    # ---- interleaving ----------------------------------------------------------------------
    @staticmethod
    def interleave(video_tokens: torch.Tensor, audio_tokens: torch.Tensor, real_time: float) -> torch.Tensor:
        """(F,182,D) + (N,D) -> (L,D), exactly as videosalmonno1.py:446-470.

        Quirk kept on purpose (the checkpoint was trained with it): the "front" share is
        round(real_time * 50) tokens (Whisper's frame rate, not the 5/s token rate), so for any
        clip of 3 s or more every audio token, the padded silence of the last chunk included,
        is nearest-interpolated up to a multiple of F and spread evenly over the frames.
        """
        n_frames = video_tokens.shape[0]
        front_count = round(real_time * WHISPER_FRAMES_PER_SECOND)
        front, back = audio_tokens[:front_count], audio_tokens[front_count:]
        remainder = front.shape[0] % n_frames
        if remainder:
            target = front.shape[0] + n_frames - remainder
            front = F.interpolate(front.T.unsqueeze(0), size=target, mode="nearest").squeeze(0).T
        per_frame = front.reshape(n_frames, -1, front.shape[-1])
        block = torch.cat([video_tokens, per_frame.to(video_tokens.dtype)], dim=1)
        return torch.cat([block.reshape(-1, block.shape[-1]), back.to(block.dtype)], dim=0)

    @torch.no_grad()
    def encode_media(
        self, pixel_values: torch.Tensor, spectrogram: torch.Tensor, real_time: float
    ) -> EncodedMedia:
        video = self.encode_frames(pixel_values)
        audio = self.encode_audio(spectrogram)
        block = self.interleave(video, audio, real_time)
        layout = av_layout(video.shape[0], audio.shape[0], real_time)
        if block.shape[0] != layout.length:
            raise PlaceholderMismatchError(
                f"AV block has {block.shape[0]} tokens but its layout says {layout.length}"
            )
        return EncodedMedia(av_block=block.to(self.embed_tokens.weight.dtype), layout=layout)

    # ---- prompt embedding ------------------------------------------------------------------
    def embed_ids(self, ids: torch.Tensor | list[int]) -> torch.Tensor:
        """(T,) text ids (no placeholder) -> (T,D) embeddings."""
        weight = self.embed_tokens.weight
        ids = torch.as_tensor(ids, dtype=torch.long, device=weight.device)
        return self.embed_tokens(ids)

    def embed_prompt(self, input_ids: list[int], av_blocks: list[torch.Tensor]) -> torch.Tensor:
        """Prompt ids with ``AV_PLACEHOLDER_ID`` (-200) where each clip goes -> (1,T',D).
        Raises PlaceholderMismatchError when placeholders and AV blocks differ in number."""
        positions = [i for i, token in enumerate(input_ids) if token == AV_PLACEHOLDER_ID]
        if len(positions) != len(av_blocks):
            raise PlaceholderMismatchError(
                f"prompt has {len(positions)} AV placeholder(s) but {len(av_blocks)} clip(s) were encoded"
            )
        pieces, start = [], 0
        for pos, block in zip(positions, av_blocks, strict=True):
            if start < pos:
                pieces.append(self.embed_ids(input_ids[start:pos]))
            pieces.append(block.to(self.embed_tokens.weight.device))
            start = pos + 1
        if start < len(input_ids):
            pieces.append(self.embed_ids(input_ids[start:]))
        return torch.cat(pieces, dim=0).unsqueeze(0)


def official_to_port_key(key: str) -> str | None:
    """Map an official state-dict key to this module's name; None for keys that are not
    weights here (the Q-Former's position_ids buffer)."""
    if key == "speech_Qformer.bert.embeddings.position_ids":
        return None
    for official, port in (
        ("model.vision_tower.vision_tower.vision_model.", "vision_tower."),
        ("model.mm_projector.", "mm_projector."),
        ("model.image_newline", "image_newline"),
    ):
        if key.startswith(official):
            return port + key[len(official) :]
    if key.startswith("speech_Qformer.bert."):
        rest = key[len("speech_Qformer.bert.") :]
        rest = rest.replace("embeddings.LayerNorm.", "layernorm.")
        rest = rest.replace("attention.self.", "attention.attention.")
        return "speech_Qformer." + rest
    if key.startswith(("model.", "lm_head.")):
        return "llm." + key
    return key


def port_to_official_key(key: str) -> str:
    """Inverse of ``official_to_port_key`` (used to write checkpoints in the released layout)."""
    for port, official in (
        ("vision_tower.", "model.vision_tower.vision_tower.vision_model."),
        ("mm_projector.", "model.mm_projector."),
        ("image_newline", "model.image_newline"),
        ("llm.", ""),
    ):
        if key.startswith(port):
            return official + key[len(port) :]
    if key.startswith("speech_Qformer."):
        rest = key[len("speech_Qformer.") :]
        rest = (
            rest.replace("layernorm.", "embeddings.LayerNorm.", 1) if rest.startswith("layernorm.") else rest
        )
        rest = rest.replace("attention.attention.", "attention.self.")
        return "speech_Qformer.bert." + rest
    return key
