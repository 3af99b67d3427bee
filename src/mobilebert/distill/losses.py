"""Knowledge-transfer losses of SPEC §3, each a small function, plus the teacher->student mapping.

Every loss averages over *real* positions only (``attention_mask`` 1), unlike the reference, which also
averages over padding. Each takes an optional denominator (``n_tokens`` / ``n_masked``): the trainer passes
the count over the whole global batch (all micro-batches, all ranks) so that gradient accumulation and DDP
compute exactly the loss a single process would on the whole batch. Left out, the local count is used.

Shapes: B batch, T sequence, H hidden width, nh heads, N masked positions, V vocabulary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import MobileBertConfig
from ..modeling import mean_pool

log = logging.getLogger(__name__)

# SPEC §3 factors (each later divided by the number of student layers).
ATTENTION_FACTOR = 1.0
HIDDEN_FACTOR = 100.0  # feature map transfer
BETA = 5000.0  # mean transfer
GAMMA = 5.0  # variance transfer
TRANSFER_TERMS = ("fmt", "mean", "var", "att")  # per layer
SENTENCE_TERMS = ("emb",)  # last layer, mean-pooled (sentence encoders); off unless transfer_weights sets it


def _real(attention_mask: Tensor | None, like: Tensor) -> Tensor:
    """(B, T) float mask of real positions; all ones when no mask is given."""
    if attention_mask is None:
        return torch.ones(like.shape[:2], dtype=like.dtype, device=like.device)
    return attention_mask.to(like.dtype)


def _count(mask: Tensor, given: float | Tensor | None) -> Tensor | float:
    return mask.sum().clamp_min(1) if given is None else given


def parameter_free_layer_norm(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Normalise the last axis to zero mean, unit variance; no weight or bias (so nothing to learn around)."""
    return F.layer_norm(x.float(), x.shape[-1:], eps=eps)


def feature_map_loss(student: Tensor, teacher: Tensor, attention_mask: Tensor | None = None,
                     n_tokens: float | Tensor | None = None) -> Tensor:
    """MSE between the parameter-free LayerNorm of block outputs, over real tokens and features.

    student, teacher: (B, T, H); attention_mask: (B, T). Returns a scalar.
    """
    mask = _real(attention_mask, student).float()
    diff = (parameter_free_layer_norm(student) - parameter_free_layer_norm(teacher.detach())).pow(2).sum(-1)  # (B, T)
    return (diff * mask).sum() / (_count(mask, n_tokens) * student.shape[-1])


def mean_variance_loss(student: Tensor, teacher: Tensor, attention_mask: Tensor | None = None,
                       n_tokens: float | Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(mean((mu_T - mu_S)^2), mean(|var_T - var_S|)) with statistics over the hidden axis, averaged over
    real tokens. student, teacher: (B, T, H). Keeps the raw activations' scale, which FMT normalises away."""
    mask = _real(attention_mask, student).float()
    s, t = student.float(), teacher.detach().float()
    mean_diff = (t.mean(-1) - s.mean(-1)).pow(2)  # (B, T)
    var_diff = (t.var(-1, unbiased=False) - s.var(-1, unbiased=False)).abs()  # (B, T)
    n = _count(mask, n_tokens)
    return (mean_diff * mask).sum() / n, (var_diff * mask).sum() / n


class _ScoresKL(torch.autograd.Function):
    """KL(p_T || softmax(s)) summed with per-query weights, differentiated w.r.t. the student's *scores*.

    The gradient of KL w.r.t. the scores is (softmax(s) - p_T) * w; computing it in forward and saving only
    it keeps one (B, nh, T, T) tensor per layer alive until backward (autograd would keep three)."""

    @staticmethod
    def forward(ctx, s_scores: Tensor, t_logp: Tensor, weight: Tensor, key_mask: Tensor) -> Tensor:  # type: ignore[override]
        s_logp = s_scores.float().masked_fill(~key_mask, torch.finfo(torch.float32).min).log_softmax(-1)
        p_t = t_logp.exp()
        kl = torch.where(key_mask, p_t * (t_logp - s_logp), 0.0).sum(-1)  # (B, nh, T)
        ctx.save_for_backward(((s_logp.exp() - p_t) * weight.unsqueeze(-1)).to(s_scores.dtype))
        return (kl * weight).sum()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (g,) = ctx.saved_tensors
        return grad * g, None, None, None


def attention_transfer_loss(student_scores: Tensor, teacher_scores: Tensor, attention_mask: Tensor | None = None,
                            n_tokens: float | Tensor | None = None) -> Tensor:
    """KL(teacher || student) of per-head attention distributions over keys, from pre-softmax scores.

    student_scores: (B, nh_s, T, T); teacher_scores: (B, nh_t, T, T), scaled and masked as the model
    returns them; attention_mask: (B, T). Averaged over batch, heads and real query positions; padded keys
    get zero probability on both sides. When head counts differ, each side's distributions are first
    averaged over its heads (one map per layer). Returns a scalar.
    """
    B, nh_s, T, _ = student_scores.shape
    mask = _real(attention_mask, student_scores[:, 0]).float()  # (B, T)
    key_mask = (mask > 0)[:, None, None, :]  # (B, 1, 1, T)
    t_logp = teacher_scores.detach().float().masked_fill(~key_mask, torch.finfo(torch.float32).min).log_softmax(-1)
    if teacher_scores.shape[1] != nh_s:  # head-averaged transfer
        t_logp = t_logp.logsumexp(1, keepdim=True) - torch.log(torch.tensor(float(t_logp.shape[1])))
        s_logp = student_scores.float().masked_fill(~key_mask, torch.finfo(torch.float32).min).log_softmax(-1)
        s_logp = s_logp.logsumexp(1, keepdim=True) - torch.log(torch.tensor(float(nh_s)))
        kl = torch.where(key_mask, t_logp.exp() * (t_logp - s_logp), 0.0).sum(-1)  # (B, 1, T)
        return (kl * mask[:, None, :]).sum() / _count(mask, n_tokens)
    weight = (mask / (_count(mask, n_tokens) * nh_s))[:, None, :].expand(B, nh_s, T)  # (B, nh, T)
    return _ScoresKL.apply(student_scores, t_logp, weight, key_mask.expand(B, nh_s, T, T))


def sentence_embedding_loss(student: Tensor, teacher: Tensor, attention_mask: Tensor | None = None,
                            n_sequences: float | Tensor | None = None) -> Tensor:
    """1 - cosine(mean-pooled student, mean-pooled teacher) per sequence, averaged (or summed / ``n_sequences``).

    student, teacher: (B, T, H) last-layer outputs of the same width. What a sentence encoder is used for is the
    cosine of these pooled vectors, which the per-token terms only reach indirectly (FMT normalises each token
    and so ignores its scale, which pooling mixes)."""
    s = mean_pool(student.float(), attention_mask)
    t = mean_pool(teacher.detach().float(), attention_mask)
    loss = (1.0 - F.cosine_similarity(s, t, dim=-1)).sum()
    return loss / (student.shape[0] if n_sequences is None else n_sequences)


def pretraining_distillation_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor,
                                  alpha: float = 0.5, temperature: float = 1.0,
                                  n_masked: float | Tensor | None = None) -> Tensor:
    """MLM cross-entropy against ``alpha * onehot(label) + (1 - alpha) * softmax(teacher / T)``.

    student_logits, teacher_logits: (N, V) at masked positions only; labels: (N,). Returns a scalar
    (mean over the N positions, or sum / ``n_masked``). The student logits are not divided by T (SPEC §3).
    """
    target = F.softmax(teacher_logits.detach().float() / temperature, dim=-1) * (1.0 - alpha)
    target = target.scatter_add(-1, labels[:, None], torch.full_like(target[:, :1], alpha))
    ce = -(target * F.log_softmax(student_logits.float(), dim=-1)).sum()
    return ce / (labels.numel() if n_masked is None else n_masked)


# ----------------------------------------------------------------------------- task-specific distillation
def soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0,
            mask: Tensor | None = None) -> Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)) summed over rows (Hinton et al. 2015).

    student_logits, teacher_logits: (N, C); ``mask`` (N, C) marks the classes that exist (SQuAD: the real
    tokens of each window); the rest get zero probability on both sides. The T^2 keeps the gradient's scale
    independent of T. Returns the sum over the N rows (callers divide)."""
    s = student_logits.float() / temperature
    t = teacher_logits.detach().float() / temperature
    if mask is not None:
        s = s.masked_fill(~mask, torch.finfo(torch.float32).min)
        t = t.masked_fill(~mask, torch.finfo(torch.float32).min)
    t_logp, s_logp = t.log_softmax(-1), s.log_softmax(-1)
    kl = t_logp.exp() * (t_logp - s_logp)
    if mask is not None:
        kl = torch.where(mask, kl, 0.0)
    return kl.sum() * temperature ** 2


def classification_distillation_loss(student_logits: Tensor, teacher_logits: Tensor | None, labels: Tensor,
                                     alpha: float = 0.5, temperature: float = 1.0,
                                     n_sequences: float | Tensor | None = None) -> Tensor:
    """``alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))``.

    student_logits, teacher_logits: (B, C); labels: (B,). Mean over the batch (or sum / ``n_sequences``).
    With ``alpha == 1`` (or no teacher) this is exactly the model's own cross-entropy."""
    if n_sequences is None:
        ce = F.cross_entropy(student_logits, labels.view(-1))
    else:
        ce = F.cross_entropy(student_logits, labels.view(-1), reduction="sum") / n_sequences
    if teacher_logits is None or alpha == 1.0:
        return ce
    kd = soft_kl(student_logits, teacher_logits, temperature) / (labels.numel() if n_sequences is None else n_sequences)
    return alpha * ce + (1.0 - alpha) * kd


def regression_distillation_loss(student: Tensor, teacher: Tensor | None, labels: Tensor, alpha: float = 0.5,
                                 n_sequences: float | Tensor | None = None) -> Tensor:
    """MSE to ``alpha * label + (1 - alpha) * teacher``; student, teacher: (B, 1) or (B,), labels: (B,).
    With ``alpha == 1`` (or no teacher) this is exactly the model's own MSE."""
    s = student.view(-1)
    target = labels.to(s.dtype).view(-1)
    if teacher is not None and alpha != 1.0:
        target = alpha * target + (1.0 - alpha) * teacher.detach().to(s.dtype).view(-1)
    if n_sequences is None:
        return F.mse_loss(s, target)
    return F.mse_loss(s, target, reduction="sum") / n_sequences


def span_distillation_loss(start_logits: Tensor, end_logits: Tensor, teacher_start: Tensor | None,
                           teacher_end: Tensor | None, start_positions: Tensor, end_positions: Tensor,
                           attention_mask: Tensor | None = None, alpha: float = 0.5, temperature: float = 1.0,
                           n_sequences: float | Tensor | None = None) -> Tensor:
    """SQuAD: the classification loss on start and end logits, averaged over the two.

    start_logits, end_logits, teacher_*: (B, T); positions: (B,), positions outside the window ignored as
    in the model's own loss. With ``attention_mask`` both terms run over real tokens only: padding gets no
    probability, so the loss does not depend on how wide a batch is padded (micro-batches and DDP shards
    then add up to the whole batch), and the cached teacher logits end where each window ends. Without a
    mask and with ``alpha == 1`` this is exactly the model's own loss."""
    T = start_logits.shape[1]
    mask = None if attention_mask is None else attention_mask.bool()
    if mask is not None:
        start_logits = start_logits.masked_fill(~mask, torch.finfo(start_logits.dtype).min)
        end_logits = end_logits.masked_fill(~mask, torch.finfo(end_logits.dtype).min)
    s_pos, e_pos = start_positions.view(-1).clamp(0, T), end_positions.view(-1).clamp(0, T)
    if n_sequences is None:
        ce = (F.cross_entropy(start_logits, s_pos, ignore_index=T) + F.cross_entropy(end_logits, e_pos, ignore_index=T)) / 2
    else:
        ce = (F.cross_entropy(start_logits, s_pos, ignore_index=T, reduction="sum")
              + F.cross_entropy(end_logits, e_pos, ignore_index=T, reduction="sum")) / (2 * n_sequences)
    if teacher_start is None or teacher_end is None or alpha == 1.0:
        return ce
    kd = (soft_kl(start_logits, teacher_start, temperature, mask)
          + soft_kl(end_logits, teacher_end, temperature, mask)) / 2
    return alpha * ce + (1.0 - alpha) * kd / (start_logits.shape[0] if n_sequences is None else n_sequences)


# ----------------------------------------------------------------------------- teacher -> student map
class MappingError(ValueError):
    """A teacher and a student that cannot be mapped onto each other."""


@dataclass
class TransferMap:
    """How student layer i is taught: by teacher block ``layer_map[i]`` (0-based block index), through a
    learned projection when widths differ, head-averaged when head counts differ."""

    layer_map: list[int]
    project: bool  # student width != teacher width
    head_average: bool  # head counts differ
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, teacher: MobileBertConfig, student: MobileBertConfig,
              layer_map: list[int] | None = None) -> TransferMap:
        Lt, Ls = teacher.num_hidden_layers, student.num_hidden_layers
        notes = []
        if teacher.vocab_size != student.vocab_size:
            raise MappingError(f"teacher vocabulary {teacher.vocab_size} != student vocabulary {student.vocab_size}: "
                               "pre-training distillation needs the same vocabulary")
        if layer_map is None:
            if Ls > Lt:
                raise MappingError(f"student has {Ls} layers but the teacher only {Lt}; give an explicit layer_map")
            layer_map = [(i + 1) * Lt // Ls - 1 for i in range(Ls)]
            if Ls != Lt:
                notes.append(f"uniform layer map student->teacher {layer_map}")
        else:
            layer_map = [int(x) for x in layer_map]
            if len(layer_map) != Ls or not all(0 <= x < Lt for x in layer_map):
                raise MappingError(f"layer_map {layer_map} must list {Ls} teacher layers, each in [0, {Lt})")
            notes.append(f"explicit layer map student->teacher {layer_map}")
        project = teacher.hidden_size != student.hidden_size
        if project:
            notes.append(f"learned linear projection of student blocks {student.hidden_size} -> teacher {teacher.hidden_size}")
        heads = teacher.num_attention_heads != student.num_attention_heads
        if heads:
            notes.append(f"head-averaged attention transfer (teacher {teacher.num_attention_heads} heads, "
                         f"student {student.num_attention_heads})")
        return cls(layer_map, project, heads, notes)


class TransferLoss(nn.Module):
    """Per-layer transfer terms between student and teacher outputs (hidden states and attention scores).

    Holds the learned projections (one per student layer, only when widths differ); they train with the
    layer they belong to and are not part of the saved student."""

    def __init__(self, tmap: TransferMap, student_width: int, teacher_width: int) -> None:
        super().__init__()
        self.map = tmap
        n = len(tmap.layer_map)
        self.proj = nn.ModuleList(nn.Linear(student_width, teacher_width) for _ in range(n)) if tmap.project else None

    def layer_terms(self, i: int, s_hidden: Tensor, t_hidden: Tensor, s_scores: Tensor | None,
                    t_scores: Tensor | None, attention_mask: Tensor | None, n_tokens: float | Tensor | None,
                    terms: set[str]) -> dict[str, Tensor]:
        """Unweighted terms for student layer i (0-based) against its teacher block."""
        if self.proj is not None:
            s_hidden = self.proj[i](s_hidden)
        out: dict[str, Tensor] = {}
        if "fmt" in terms:
            out["fmt"] = feature_map_loss(s_hidden, t_hidden, attention_mask, n_tokens)
        if "mean" in terms or "var" in terms:
            m, v = mean_variance_loss(s_hidden, t_hidden, attention_mask, n_tokens)
            if "mean" in terms:
                out["mean"] = m
            if "var" in terms:
                out["var"] = v
        if "att" in terms and s_scores is not None and t_scores is not None:
            out["att"] = attention_transfer_loss(s_scores, t_scores, attention_mask, n_tokens)
        return out


def default_transfer_weights(num_student_layers: int) -> dict[str, float]:
    """SPEC §3 factors, each divided by the number of student layers."""
    L = float(num_student_layers)
    return {"att": ATTENTION_FACTOR / L, "fmt": HIDDEN_FACTOR / L, "mean": BETA / L, "var": GAMMA / L}
