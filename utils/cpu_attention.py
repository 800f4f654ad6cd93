"""Attention for grouped-query models (Qwen2.5: 14 query heads share 2 key-value heads) on a CPU, without copying
the keys and values for every query head.

transformers' SDPA attention copies each key-value head once per query head (``repeat_kv``) whenever there is a mask,
as in every padded batch. torch's SDPA takes the heads grouped (``enable_gqa``), and on a CPU its kernel then computes
the same numbers bit for bit (``tests/test_cpu_attention.py``; ``utils.scripts.cpu_floors`` on the real model), though
only without gradients: backward sums a group's key and value gradients in another order, so training keeps
transformers' path."""

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

GROUPED_SDPA = "kit_grouped_sdpa"


def grouped_sdpa_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' SDPA attention, with the key-value heads left grouped where that changes no number (without a
    mask transformers groups them itself)."""
    grouped = key.shape[1] != query.shape[1] and query.device.type == "cpu" and attention_mask is not None
    if not grouped or torch.is_grad_enabled() or dropout or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)  # fmt: skip
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, scale=scaling, enable_gqa=True
    )
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make ``GROUPED_SDPA`` a name ``from_pretrained(attn_implementation=...)`` accepts; returns it."""
    AttentionInterface.register(GROUPED_SDPA, grouped_sdpa_forward)
    AttentionMaskInterface.register(GROUPED_SDPA, sdpa_mask)
    return GROUPED_SDPA
