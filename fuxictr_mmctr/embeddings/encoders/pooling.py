"""One vector per item from a model's token or patch states."""
from __future__ import annotations

TOKEN_POOLINGS = ("mean", "cls", "max", "lasttoken", "mean_sqrt_len")


def pool_tokens(hidden, mask, how: str = "mean"):
    """Pool ``(B, T, H)`` token states over the tokens ``mask`` marks.

    Args:
        hidden: ``(B, T, H)`` states.
        mask: ``(B, T)`` attention mask, 1 on real tokens (left or right padding).
        how: ``mean`` (attention-mask weighted), ``cls`` (first token), ``max`` (over real
            tokens), ``lasttoken`` (the last real token) or ``mean_sqrt_len`` (the sum over
            real tokens divided by the square root of their count, as sentence-transformers).

    Returns:
        ``(B, H)`` float32.
    """
    import torch

    h = hidden.float()
    m = mask.to(h.device, dtype=h.dtype).unsqueeze(-1)           # (B, T, 1)
    count = m.sum(1).clamp(min=1.0)                              # (B, 1)
    if how == "mean":
        return (h * m).sum(1) / count
    if how == "mean_sqrt_len":
        return (h * m).sum(1) / count.sqrt()
    if how == "cls":
        return h[:, 0]
    if how == "max":
        return h.masked_fill(m == 0, torch.finfo(h.dtype).min).max(1).values
    if how == "lasttoken":
        positions = torch.arange(h.shape[1], device=h.device).unsqueeze(0)   # (1, T)
        last = (positions * mask.to(h.device)).argmax(1)                      # (B,)
        return h[torch.arange(h.shape[0], device=h.device), last]
    raise ValueError(f"unknown pooling {how!r}; choose one of {TOKEN_POOLINGS}")


def pool_patches(states):
    """The mean over the positions of a vision model's last states: ``(B, T, H)`` tokens or
    ``(B, C, H, W)`` feature maps -> ``(B, H)`` or ``(B, C)`` float32."""
    x = states.float()
    if x.ndim == 4:
        return x.mean(dim=(2, 3))
    if x.ndim == 3:
        return x.mean(dim=1)
    return x.reshape(x.shape[0], -1)
