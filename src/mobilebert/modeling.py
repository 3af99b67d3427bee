"""The MobileBERT family in one file: NoNorm, embeddings, the bottleneck block, encoder and task heads.

Every architectural choice (NoNorm or LayerNorm, bottleneck or not, where Q/K/V read from) is made once,
in ``__init__``; the ``forward`` methods then read like the formulas of SPEC §2. Module and parameter names
follow transformers' ``modeling_mobilebert.py`` so that state-dict keys line up with Hugging Face checkpoints.
Plain BERT is the case ``use_bottleneck=False, trigram_input=False, num_feedforward_networks=1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import MobileBertConfig

if TYPE_CHECKING:
    import os


# ----------------------------------------------------------------------------- building blocks
class NoNorm(nn.Module):
    """MobileBERT's replacement for LayerNorm: an elementwise affine map, no statistics (x * w + b)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size))

    def forward(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.bias, x, self.weight)


def make_norm(config: MobileBertConfig, size: int, legacy_site: bool = False) -> nn.Module:
    """The one place that builds a block norm. ``legacy_site`` marks the two norms transformers builds with
    torch's default eps (1e-5) instead of layer_norm_eps; ``config.legacy_norm_eps`` reproduces that."""
    if config.normalization_type == "no_norm":
        return NoNorm(size)
    eps = 1e-5 if (legacy_site and config.legacy_norm_eps) else config.layer_norm_eps
    return nn.LayerNorm(size, eps=eps)


def make_activation(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU(),
        "relu6": nn.ReLU6(),
        "gelu": nn.GELU(),
        "gelu_new": nn.GELU(approximate="tanh"),
        "gelu_pytorch_tanh": nn.GELU(approximate="tanh"),
        "tanh": nn.Tanh(),
    }[name]


class DenseNorm(nn.Module):
    """``norm(dense(x) + residual)``: the Linear-then-residual-then-norm step that recurs through the block."""

    def __init__(self, config: MobileBertConfig, d_in: int, d_out: int, dropout: float = 0.0,
                 legacy_site: bool = False) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = make_norm(config, d_out, legacy_site)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        y = self.dropout(self.dense(x))
        return self.LayerNorm(y if residual is None else y + residual)


class Dense(nn.Module):
    """``act(dense(x))``, named ``intermediate`` in checkpoints."""

    def __init__(self, d_in: int, d_out: int, act: str) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.act = make_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.dense(x))


# ----------------------------------------------------------------------------- embeddings
class MobileBertEmbeddings(nn.Module):
    """Token (+ trigram projection) + position + token type, then norm."""

    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        width_in = config.embedding_size * (3 if config.trigram_input else 1)
        self.embedding_transformation = (
            nn.Linear(width_in, config.hidden_size) if width_in != config.hidden_size or config.trigram_input else None
        )
        self.LayerNorm = make_norm(config, config.hidden_size, legacy_site=True)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        B, T = input_ids.shape
        e = self.word_embeddings(input_ids)  # (B, T, E)
        if self.config.padding_invariant and attention_mask is not None:
            # Zero padded positions so the last real token's trigram reads zeros, as it would unpadded.
            e = e * attention_mask.unsqueeze(-1).to(e.dtype)
        if self.config.trigram_input:
            nxt = F.pad(e[:, 1:], (0, 0, 0, 1))  # position t holds e[t+1]
            prv = F.pad(e[:, :-1], (0, 0, 1, 0))  # position t holds e[t-1]
            e = torch.cat([nxt, e, prv], dim=-1)  # (B, T, 3E)
        if self.embedding_transformation is not None:
            e = self.embedding_transformation(e)  # (B, T, H)
        pos = self.position_embeddings.weight[:T]  # (T, H)
        h = e + pos + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(h))


# ----------------------------------------------------------------------------- attention
class MobileBertSelfAttention(nn.Module):
    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__()
        width = config.true_hidden_size
        self.n_head = config.num_attention_heads
        self.head_dim = width // self.n_head
        self.query = nn.Linear(config.qk_input_size, width)
        self.key = nn.Linear(config.qk_input_size, width)
        self.value = nn.Linear(config.v_input_size, width)
        self.dropout_p = config.attention_probs_dropout_prob

    def _heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)

    def forward(self, qk_in: Tensor, v_in: Tensor, mask: Tensor | None, want_maps: bool
                ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Returns (context (B, T, width), probs, pre-softmax scores); the maps only when ``want_maps``."""
        q, k, v = self._heads(self.query(qk_in)), self._heads(self.key(qk_in)), self._heads(self.value(v_in))
        p = self.dropout_p if self.training else 0.0
        if want_maps:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, nh, T, T)
            if mask is not None:
                scores = scores + mask
            probs = scores.softmax(dim=-1)
            ctx = F.dropout(probs, p, self.training) @ v
        else:
            scores = probs = None
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        B, _, T, _ = ctx.shape
        return ctx.transpose(1, 2).reshape(B, T, -1), probs, scores


class MobileBertAttention(nn.Module):
    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__()
        self.self = MobileBertSelfAttention(config)
        width = config.true_hidden_size
        self.output = DenseNorm(config, width, width, 0.0 if config.use_bottleneck else config.hidden_dropout_prob)


class Bottleneck(nn.Module):
    """Input bottleneck (512 -> 128) and, for shared Q/K, a second one that Q and K read."""

    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__()
        self.input = DenseNorm(config, config.hidden_size, config.intra_bottleneck_size)
        self.attention = (
            DenseNorm(config, config.hidden_size, config.intra_bottleneck_size)
            if config.key_query_shared_bottleneck else None
        )


class FFNLayer(nn.Module):
    """One of the extra stacked FFNs: ``norm(W2 act(W1 a) + a)``."""

    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__()
        self.intermediate = Dense(config.true_hidden_size, config.intermediate_size, config.hidden_act)
        self.output = DenseNorm(config, config.intermediate_size, config.true_hidden_size)

    def forward(self, a: Tensor) -> Tensor:
        return self.output(self.intermediate(a), a)


class MobileBertOutput(nn.Module):
    """Last FFN's output, then (with bottleneck) the 128 -> 512 projection back onto the block input."""

    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__()
        w = config.true_hidden_size
        self.dense = nn.Linear(config.intermediate_size, w)
        self.LayerNorm = make_norm(config, w, legacy_site=True)
        self.dropout = nn.Identity() if config.use_bottleneck else nn.Dropout(config.hidden_dropout_prob)
        self.bottleneck = (
            DenseNorm(config, w, config.hidden_size, config.hidden_dropout_prob) if config.use_bottleneck else None
        )

    def forward(self, inter: Tensor, a: Tensor, x: Tensor) -> Tensor:
        o = self.LayerNorm(self.dropout(self.dense(inter)) + a)
        return o if self.bottleneck is None else self.bottleneck(o, x)


class MobileBertLayer(nn.Module):
    """One block (SPEC §2 steps 1-8)."""

    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__()
        self.bottleneck = Bottleneck(config) if config.use_bottleneck else None
        # Where Q/K and V read from, decided once: "shared" bottleneck, the block's "bottleneck" input, or "x".
        if config.use_bottleneck and config.key_query_shared_bottleneck:
            self.qk_source, self.v_source = "shared", "x"
        elif config.use_bottleneck and config.use_bottleneck_attention:
            self.qk_source, self.v_source = "bottleneck", "bottleneck"
        else:
            self.qk_source, self.v_source = "x", "x"
        self.attention = MobileBertAttention(config)
        self.ffn = nn.ModuleList(FFNLayer(config) for _ in range(config.num_feedforward_networks - 1))
        self.intermediate = Dense(config.true_hidden_size, config.intermediate_size, config.hidden_act)
        self.output = MobileBertOutput(config)

    def forward(self, x: Tensor, mask: Tensor | None, want_maps: bool
                ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        sources = {"x": x}
        if self.bottleneck is not None:
            sources["bottleneck"] = self.bottleneck.input(x)  # (B, T, 128) layer_input
            if self.bottleneck.attention is not None:
                sources["shared"] = self.bottleneck.attention(x)  # (B, T, 128) what Q and K read
        layer_input = sources.get("bottleneck", x)
        ctx, probs, scores = self.attention.self(sources[self.qk_source], sources[self.v_source], mask, want_maps)
        a = self.attention.output(ctx, layer_input)
        for ffn in self.ffn:
            a = ffn(a)
        out = self.output(self.intermediate(a), a, x)
        return out, probs, scores


# ----------------------------------------------------------------------------- outputs
@dataclass
class ModelOutput:
    """Outputs with transformers' field names; unused fields stay None."""

    loss: Tensor | None = None
    last_hidden_state: Tensor | None = None
    pooler_output: Tensor | None = None
    logits: Tensor | None = None
    prediction_logits: Tensor | None = None
    seq_relationship_logits: Tensor | None = None
    start_logits: Tensor | None = None
    end_logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None  # embedding output, then every block's output
    attentions: tuple[Tensor, ...] | None = None  # every layer's attention probabilities (B, nh, T, T)
    attention_scores: tuple[Tensor, ...] | None = None  # every layer's scaled, masked pre-softmax scores
    mlm_loss: Tensor | None = None
    nsp_loss: Tensor | None = None

    def __getitem__(self, name: str) -> Tensor | tuple[Tensor, ...] | None:
        return getattr(self, name)


# ----------------------------------------------------------------------------- base class
class MobileBertPreTrainedModel(nn.Module):
    """Weight init, checkpoint I/O and parameter counting shared by every model class."""

    base_model_prefix = "mobilebert"

    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config

    def init_weights(self) -> None:
        self.apply(self._init_module)

    def _init_module(self, m: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if m.padding_idx is not None:
                m.weight.data[m.padding_idx].zero_()
        elif isinstance(m, (nn.LayerNorm, NoNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, MobileBertLMPredictionHead):
            if m.extra is not None:
                nn.init.normal_(m.extra, std=std)
            nn.init.zeros_(m.bias)

    def num_parameters(self) -> int:
        """Unique parameters (the tied MLM decoder counted once)."""
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **config_overrides):
        """Load a Hugging Face folder (config.json + model.safetensors or pytorch_model.bin)."""
        from .checkpoint import load_pretrained

        return load_pretrained(cls, path, **config_overrides)

    def save_pretrained(self, path: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
        """Write config.json + model.safetensors that transformers loads (``dtype``: store weights cast)."""
        from .checkpoint import save_pretrained

        save_pretrained(self, path, dtype)


def extended_attention_mask(attention_mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """(B, T) 1/0 mask -> additive (B, 1, 1, T) mask, or None when nothing is masked."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


# ----------------------------------------------------------------------------- encoder
def mean_pool(hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """(B, T, H) -> (B, H): the mean over real tokens, the sentence embedding of sentence-transformers models.
    One definition shared by distillation (the sentence-embedding term), SentenceEncoder and the exports, so that
    what is taught, what is served and what is shipped pool alike."""
    if attention_mask is None:
        return hidden.mean(1)
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)


class MobileBertEncoder(nn.Module):
    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(MobileBertLayer(config) for _ in range(config.num_hidden_layers))


class MobileBertPooler(nn.Module):
    """tanh(Linear(h[:, 0])) when classifier_activation, else h[:, 0] unchanged (the released model)."""

    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size) if config.classifier_activation else None

    def forward(self, h: Tensor) -> Tensor:
        cls = h[:, 0]
        return cls if self.dense is None else torch.tanh(self.dense(cls))


class MobileBertModel(MobileBertPreTrainedModel):
    """Embeddings + encoder (+ pooler)."""

    def __init__(self, config: MobileBertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = MobileBertEmbeddings(config)
        self.encoder = MobileBertEncoder(config)
        self.pooler = MobileBertPooler(config) if add_pooling_layer else None
        self.init_weights()

    def _check_inputs(self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None) -> None:
        c = self.config
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq), got shape {tuple(input_ids.shape)}")
        if input_ids.shape[1] > c.max_position_embeddings:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_position_embeddings "
                             f"{c.max_position_embeddings}; truncate the input")
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if t is not None and t.shape != input_ids.shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {tuple(input_ids.shape)} like input_ids")
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or input_ids.numel() == 0:
            return
        lo, hi = int(input_ids.min()), int(input_ids.max())
        if lo < 0 or hi >= c.vocab_size:
            raise ValueError(f"token id {hi if hi >= c.vocab_size else lo} outside the vocabulary [0, {c.vocab_size})")
        if token_type_ids is not None and (int(token_type_ids.min()) < 0 or int(token_type_ids.max()) >= c.type_vocab_size):
            raise ValueError(f"token_type_ids must be in [0, {c.type_vocab_size})")

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False,
                output_attention_scores: bool = False) -> ModelOutput:
        self._check_inputs(input_ids, attention_mask, token_type_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        h = self.embeddings(input_ids, token_type_ids, attention_mask)
        mask = extended_attention_mask(attention_mask, h.dtype)
        want_maps = output_attentions or output_attention_scores
        hidden, probs, scores = [h], [], []
        for layer in self.encoder.layer:
            h, p, s = layer(h, mask, want_maps)
            hidden.append(h)
            probs.append(p)
            scores.append(s)
        return ModelOutput(
            last_hidden_state=h,
            pooler_output=self.pooler(h) if self.pooler is not None else None,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attentions=tuple(probs) if output_attentions else None,
            attention_scores=tuple(scores) if output_attention_scores else None,
        )


# ----------------------------------------------------------------------------- heads
class MobileBertPredictionHeadTransform(nn.Module):
    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = make_activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # a real LayerNorm, always

    def forward(self, h: Tensor) -> Tensor:
        return self.LayerNorm(self.act(self.dense(h)))


class MobileBertLMPredictionHead(nn.Module):
    """MLM logits against [tied word embeddings (E x V) ; an untied extra matrix ((H - E) x V)].

    The first E features score against the input embedding matrix, the remaining H - E against ``extra``
    (``cls.predictions.dense.weight`` in Hugging Face checkpoints). For BERT, E == H and ``extra`` is empty.
    """

    def __init__(self, config: MobileBertConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.transform = MobileBertPredictionHeadTransform(config)
        self.word_embeddings = [word_embeddings]  # a list keeps the tied module out of this state dict
        extra = config.hidden_size - config.embedding_size
        self.extra = nn.Parameter(torch.zeros(extra, config.vocab_size)) if extra else None
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, h: Tensor) -> Tensor:
        t = self.transform(h)  # (B, T, H)
        E = self.word_embeddings[0].weight.shape[1]
        logits = t[..., :E] @ self.word_embeddings[0].weight.t()  # (B, T, V)
        if self.extra is not None:
            logits = logits + t[..., E:] @ self.extra
        return logits + self.bias


class MobileBertPreTrainingHeads(nn.Module):
    def __init__(self, config: MobileBertConfig, word_embeddings: nn.Embedding, nsp: bool = True) -> None:
        super().__init__()
        self.predictions = MobileBertLMPredictionHead(config, word_embeddings)
        self.seq_relationship = nn.Linear(config.hidden_size, 2) if nsp else None


def _carry(out: ModelOutput, **fields) -> ModelOutput:
    """A head's output: its own fields plus the encoder's optional maps."""
    return ModelOutput(hidden_states=out.hidden_states, attentions=out.attentions,
                       attention_scores=out.attention_scores, **fields)


class MobileBertForPreTraining(MobileBertPreTrainedModel):
    """MLM + NSP; loss = MLM cross-entropy (labels -100 ignored) + NSP cross-entropy."""

    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__(config)
        self.mobilebert = MobileBertModel(config)
        self.cls = MobileBertPreTrainingHeads(config, self.mobilebert.embeddings.word_embeddings)
        self.init_weights()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                labels: Tensor | None = None, next_sentence_label: Tensor | None = None, **kw) -> ModelOutput:
        out = self.mobilebert(input_ids, attention_mask, token_type_ids, **kw)
        mlm = self.cls.predictions(out.last_hidden_state)
        nsp = self.cls.seq_relationship(out.pooler_output)
        mlm_loss = F.cross_entropy(mlm.flatten(0, 1), labels.flatten(), ignore_index=-100) if labels is not None else None
        nsp_loss = F.cross_entropy(nsp, next_sentence_label.view(-1)) if next_sentence_label is not None else None
        losses = [x for x in (mlm_loss, nsp_loss) if x is not None]
        return _carry(out, loss=sum(losses) if losses else None, prediction_logits=mlm, seq_relationship_logits=nsp,
                      last_hidden_state=out.last_hidden_state, mlm_loss=mlm_loss, nsp_loss=nsp_loss)


class MobileBertForMaskedLM(MobileBertPreTrainedModel):
    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__(config)
        self.mobilebert = MobileBertModel(config, add_pooling_layer=False)
        self.cls = MobileBertPreTrainingHeads(config, self.mobilebert.embeddings.word_embeddings, nsp=False)
        self.init_weights()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                labels: Tensor | None = None, **kw) -> ModelOutput:
        out = self.mobilebert(input_ids, attention_mask, token_type_ids, **kw)
        logits = self.cls.predictions(out.last_hidden_state)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100) if labels is not None else None
        return _carry(out, loss=loss, logits=logits, last_hidden_state=out.last_hidden_state)


def classifier_layers(config: MobileBertConfig) -> tuple[nn.Dropout, nn.Linear]:
    """A classification head's dropout (classifier_dropout, else the hidden dropout) and its linear layer."""
    p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
    return nn.Dropout(p), nn.Linear(config.hidden_size, config.num_labels)


class MobileBertForSequenceClassification(MobileBertPreTrainedModel):
    """Classification (cross-entropy) or, with num_labels == 1, regression (MSE) on the pooled output; with
    ``config.problem_type == "multi_label_classification"`` independent labels (sigmoid + BCE on (B, C) float
    multi-hot labels), as transformers trains them."""

    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__(config)
        self.mobilebert = MobileBertModel(config)
        self.dropout, self.classifier = classifier_layers(config)
        self.init_weights()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                labels: Tensor | None = None, **kw) -> ModelOutput:
        out = self.mobilebert(input_ids, attention_mask, token_type_ids, **kw)
        logits = self.classifier(self.dropout(out.pooler_output))
        loss = None
        if labels is not None:
            if self.config.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).view(-1))
            elif self.config.problem_type == "multi_label_classification":
                loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels.view(-1))
        return _carry(out, loss=loss, logits=logits)


class MobileBertForTokenClassification(MobileBertPreTrainedModel):
    """A label per token (NER, tagging) from the last hidden state; cross-entropy with labels -100 ignored,
    so only each word's first word piece (the others labelled -100 by the data code) is scored."""

    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__(config)
        self.mobilebert = MobileBertModel(config, add_pooling_layer=False)
        self.dropout, self.classifier = classifier_layers(config)
        self.init_weights()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                labels: Tensor | None = None, **kw) -> ModelOutput:
        out = self.mobilebert(input_ids, attention_mask, token_type_ids, **kw)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return _carry(out, loss=loss, logits=logits)


class MobileBertForQuestionAnswering(MobileBertPreTrainedModel):
    """Span QA: start/end logits per token; loss is the mean of start and end cross-entropy."""

    def __init__(self, config: MobileBertConfig) -> None:
        super().__init__(config)
        self.mobilebert = MobileBertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                start_positions: Tensor | None = None, end_positions: Tensor | None = None, **kw) -> ModelOutput:
        out = self.mobilebert(input_ids, attention_mask, token_type_ids, **kw)
        start, end = self.qa_outputs(out.last_hidden_state).unbind(-1)  # (B, T) each
        loss = None
        if start_positions is not None and end_positions is not None:
            T = start.shape[1]  # positions outside the sequence are ignored, as in transformers
            s, e = start_positions.view(-1).clamp(0, T), end_positions.view(-1).clamp(0, T)
            loss = (F.cross_entropy(start, s, ignore_index=T) + F.cross_entropy(end, e, ignore_index=T)) / 2
        return _carry(out, loss=loss, start_logits=start, end_logits=end)


MODEL_CLASSES = {
    "MobileBertModel": MobileBertModel,
    "MobileBertForPreTraining": MobileBertForPreTraining,
    "MobileBertForMaskedLM": MobileBertForMaskedLM,
    "MobileBertForSequenceClassification": MobileBertForSequenceClassification,
    "MobileBertForQuestionAnswering": MobileBertForQuestionAnswering,
    "MobileBertForTokenClassification": MobileBertForTokenClassification,
}
