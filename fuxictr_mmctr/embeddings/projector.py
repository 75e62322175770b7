"""Distilled projector: an MLP mapping CLIP content features into the teacher's space.

Trained on items that have both a student feature and a teacher vector, with a cosine loss
plus a symmetric in-batch InfoNCE, early-stopped on a held-out split of items. Applied to
every item afterwards, including cold items without any behaviour.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from ..errors import ConfigError
from .device import resolve_device, torch_threads

logger = logging.getLogger(__name__)


@dataclass
class ProjectorConfig:
    """Projector settings.

    Args:
        hidden_units: hidden layer sizes; the input size is the student dimension.
            Default: (256,).
        out_dim: output dimension (the teacher's). Default: 128.
        dropout: dropout after each hidden layer. Default: 0.1.
        temperature: InfoNCE temperature. Default: 0.07.
        nce_weight: weight of the InfoNCE term next to the cosine loss. Default: 1.0.
        learning_rate: AdamW learning rate. Default: 1.0e-3.
        weight_decay: AdamW weight decay. Default: 1.0e-4.
        batch_size: items per step. Default: 256.
        epochs: maximum epochs. Default: 50.
        patience: epochs without a better validation cosine before stopping. Default: 5.
        val_fraction: share of the paired items held out for early stopping. Default: 0.1.
        seed: seed of the split, initialisation and shuffling. Default: 2024.
        device: ``auto``, ``cpu`` or ``cuda[:N]``; AMP is used on CUDA. Default: auto.
        progress: show a tqdm bar over epochs. Default: True.
        cpu_threads: torch intra-op threads when training on CPU; None keeps torch's setting.
            The MLP is small: one thread trains it in seconds to minutes, while several
            spinning threads on a busy CPU were measured tens of times slower. Default: 1.
    """

    hidden_units: Tuple[int, ...] = (256,)
    out_dim: int = 128
    dropout: float = 0.1
    temperature: float = 0.07
    nce_weight: float = 1.0
    learning_rate: float = 1.0e-3
    weight_decay: float = 1.0e-4
    batch_size: int = 256
    epochs: int = 50
    patience: int = 5
    val_fraction: float = 0.1
    seed: int = 2024
    device: str = "auto"
    progress: bool = True
    cpu_threads: Optional[int] = 1


@dataclass
class ProjectorResult:
    """A trained projector and the student vectors it gives.

    Attributes:
        vectors: ``(N + 1, out_dim)`` float32 unit vectors for every row with a student
            feature (zeros elsewhere, e.g. row 0).
        val_cosine: mean cosine to the teacher on the held-out items (best epoch).
        train_losses: mean training loss per epoch.
        val_cosines: validation cosine per epoch.
        best_epoch: epoch (0-based) whose weights were kept.
        n_train, n_val: paired items used for training and validation.
        model: the trained ``torch.nn.Module`` (on CPU).
    """

    vectors: np.ndarray
    val_cosine: float
    train_losses: List[float] = field(default_factory=list)
    val_cosines: List[float] = field(default_factory=list)
    best_epoch: int = 0
    n_train: int = 0
    n_val: int = 0
    model: object = None


def build_projector(in_dim: int, cfg: ProjectorConfig, mean=None, std=None):
    """``in_dim -> hidden_units... -> out_dim`` MLP (Linear, GELU, Dropout blocks).

    When ``mean``/``std`` are given the first layer standardises the input with them (CLIP
    features of one domain share a large common component; centring exposes what differs).
    """
    import torch
    from torch import nn

    class Standardize(nn.Module):
        def __init__(self, mean, std):
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

        def forward(self, x):                                    # (B, P)
            return (x - self.mean) / self.std

    layers, prev = [], in_dim
    if mean is not None:
        layers.append(Standardize(mean, std if std is not None else np.ones_like(mean)))
    for units in cfg.hidden_units:
        layers += [nn.Linear(prev, units), nn.GELU(), nn.Dropout(cfg.dropout)]
        prev = units
    layers.append(nn.Linear(prev, cfg.out_dim))
    return nn.Sequential(*layers)


def distill_loss(pred, target, temperature: float, nce_weight: float):
    """``mean(1 - cos(pred, target)) + nce_weight * symmetric InfoNCE`` over the batch.

    Args:
        pred: ``(B, D)`` projector outputs (any norm).
        target: ``(B, D)`` teacher vectors.
    """
    import torch
    import torch.nn.functional as F

    p = F.normalize(pred.float(), dim=-1)                        # (B, D)
    t = F.normalize(target.float(), dim=-1)                      # (B, D)
    cos_loss = (1.0 - (p * t).sum(-1)).mean()
    if nce_weight <= 0 or p.shape[0] < 2:
        return cos_loss
    logits = p @ t.T / temperature                               # (B, B)
    labels = torch.arange(p.shape[0], device=p.device)
    nce = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    return cos_loss + nce_weight * nce


def _project(model, x: np.ndarray, device: str, batch: int = 4096) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    out = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            xb = torch.as_tensor(x[i:i + batch], dtype=torch.float32, device=device)
            out.append(F.normalize(model(xb).float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def train_projector(student: np.ndarray, student_mask: np.ndarray, teacher: np.ndarray,
                    teacher_mask: np.ndarray, cfg: Optional[ProjectorConfig] = None
                    ) -> ProjectorResult:
    """Fit the projector where both views exist and project every student row.

    Args:
        student: ``(N + 1, P)`` content features.
        student_mask: ``(N + 1,)`` bool, rows holding a student feature.
        teacher: ``(N + 1, D)`` teacher vectors.
        teacher_mask: ``(N + 1,)`` bool, rows holding a teacher vector.
        cfg: the projector settings (``out_dim`` must equal ``D``).

    Raises:
        ValueError: fewer than 2 items have both views, or dimensions disagree.
    """
    cfg = cfg or ProjectorConfig()
    if teacher.shape[1] != cfg.out_dim:
        raise ConfigError(f"teacher dim {teacher.shape[1]} != ProjectorConfig.out_dim {cfg.out_dim}")
    paired = np.flatnonzero(student_mask & teacher_mask)
    if paired.size < 2:
        raise ConfigError(f"only {paired.size} item(s) have both a CLIP feature and a teacher "
                         "vector; the projector needs at least 2")
    device = resolve_device(cfg.device)
    with torch_threads(cfg.cpu_threads if device == "cpu" else None):
        return _train(student, student_mask, teacher, paired, device, cfg)


def _train(student, student_mask, teacher, paired, device, cfg) -> ProjectorResult:
    import torch
    from tqdm.auto import tqdm

    amp = device.startswith("cuda")
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    perm = rng.permutation(paired)
    n_val = int(round(cfg.val_fraction * len(perm)))
    n_val = min(max(n_val, 1), len(perm) - 1)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    x = torch.as_tensor(student, dtype=torch.float32)
    y = torch.as_tensor(teacher, dtype=torch.float32)
    x_val, y_val = x[val_idx].to(device), y[val_idx].to(device)
    rows = np.flatnonzero(student_mask)
    mean = student[rows].mean(axis=0)
    std = student[rows].std(axis=0) + 1e-6
    model = build_projector(student.shape[1], cfg, mean, std).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate,
                            weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, best_epoch, bad = -np.inf, None, 0, 0
    losses, val_cos = [], []
    bar = tqdm(range(cfg.epochs), desc="projector", unit="epoch", leave=False,
               disable=not cfg.progress)
    for epoch in bar:
        model.train()
        order = torch.as_tensor(train_idx)[torch.randperm(len(train_idx), generator=gen)]
        total, steps = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            with torch.autocast("cuda", enabled=amp):
                loss = distill_loss(model(xb), yb, cfg.temperature, cfg.nce_weight)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach())
            steps += 1
        losses.append(total / max(steps, 1))
        model.eval()
        with torch.inference_mode():
            pv = torch.nn.functional.normalize(model(x_val).float(), dim=-1)
            cos = float((pv * torch.nn.functional.normalize(y_val, dim=-1)).sum(-1).mean())
        val_cos.append(cos)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", val_cos=f"{cos:.4f}")
        if cos > best + 1e-5:
            best, best_epoch, bad = cos, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= cfg.patience:
                logger.info("projector: early stop at epoch %d (best %d)", epoch, best_epoch)
                break
    model.load_state_dict(best_state)
    vectors = np.zeros((student.shape[0], cfg.out_dim), dtype=np.float32)
    vectors[rows] = _project(model, student[rows], device)
    logger.info("projector: %d train / %d held-out items, best epoch %d, held-out cosine %.4f",
                len(train_idx), len(val_idx), best_epoch, best)
    return ProjectorResult(vectors=vectors, val_cosine=float(best), train_losses=losses,
                           val_cosines=val_cos, best_epoch=best_epoch, n_train=len(train_idx),
                           n_val=len(val_idx), model=model.cpu())
