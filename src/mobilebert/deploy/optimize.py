"""A fast inference module built from a trained model: NoNorm folded away, projections fused, SDPA.

Why this exists: in eager PyTorch MobileBERT (NoNorm + ReLU) runs no faster than its LayerNorm + GELU twin,
because every NoNorm is still a separate elementwise kernel and every small Linear a separate GEMM. The
paper's operational optimisations only pay off when the runtime exploits them. ``optimize_for_inference``
rewrites the weights once (in float64, then cast) so that at run time a student block is five GEMM "groups":

* NoNorm(W x + b) = (w * W) x + (w * b + beta): a NoNorm after a Linear folds into the Linear's rows; a NoNorm
  followed by a Linear folds into that Linear's columns. Only the scaling of a residual stream that is also
  read by a later Linear remains, as one fused ``addcmul`` feeding ``addmm``.
* Everything that reads the block input x (input bottleneck, attention bottleneck -> Q and K, V) becomes
  one ``x @ W^T`` with W stacked; with NoNorm, Q/K = W_q (w * W_att x + ...) compose into one matrix.
* The trigram embedding is ``e @ [W_next; W_cur; W_prev]^T`` followed by two shifted adds (no 384-wide
  concatenation), or optionally precomputed ``word_emb @ W_i`` tables (no GEMM at all, 3 x V x H floats).
* ``scaled_dot_product_attention``; weights live as plain buffers and ``forward`` is straight-line code.

LayerNorm configurations (w/o OPT, the teacher, BERT) get the fused GEMMs but keep their norms: a LayerNorm
cannot be folded, which is exactly the paper's point. Outputs use :class:`ModelOutput` field names.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import head_of
from ..config import MobileBertConfig
from ..modeling import (
    MobileBertLayer,
    MobileBertModel,
    ModelOutput,
    NoNorm,
)

Affine = tuple[Tensor, Tensor]  # (W (out, in), b (out,)) in float64 while folding
ACTS = {"relu": F.relu, "relu6": F.relu6, "gelu": F.gelu, "tanh": torch.tanh,
        "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}


# ----------------------------------------------------------------------------- folding algebra (float64)
def _lin(m: nn.Linear) -> Affine:
    return m.weight.detach().double().clone(), m.bias.detach().double().clone()


def _norm_affine(norm: nn.Module) -> tuple[Tensor, Tensor]:
    """(scale, shift) of a NoNorm."""
    assert isinstance(norm, NoNorm)
    return norm.weight.detach().double(), norm.bias.detach().double()


def _then_scale(f: Affine, s: Tensor, t: Tensor) -> Affine:
    """s * f(x) + t: a NoNorm after a Linear folds into its rows."""
    return f[0] * s[:, None], f[1] * s + t


def _compose(outer: Affine, inner: Affine) -> Affine:
    """outer(inner(x)): two Linears in a row become one."""
    return outer[0] @ inner[0], outer[0] @ inner[1] + outer[1]


def _stack(*fs: Affine) -> Affine:
    return torch.cat([f[0] for f in fs]), torch.cat([f[1] for f in fs])


def _ln(norm: nn.Module) -> tuple[Tensor, Tensor, float] | None:
    """LayerNorm parameters, or None for NoNorm (applied as an affine map)."""
    if isinstance(norm, nn.LayerNorm):
        return norm.weight.detach().double(), norm.bias.detach().double(), float(norm.eps)
    return None


class _Buffers(nn.Module):
    """A module whose float tensors are buffers, so ``.to(dtype)`` and ``state_dict`` work on it.

    Groups of buffers used together in a loop are listed by name in ``self.groups`` and resolved into
    ``self.resolved`` (tuples of tensors) after every ``.to()``, keeping ``forward`` free of lookups."""

    def put(self, name: str, t: Tensor) -> Tensor:
        self.register_buffer(name, t.float().contiguous())
        return getattr(self, name)

    def put_linear(self, w_name: str, b_name: str, lin: nn.Linear) -> None:
        """A Linear's transposed weight and bias as two buffers (for ``addmm(b, x, W_t)``)."""
        W, b = _lin(lin)
        self.put(w_name, W.t())
        self.put(b_name, b)

    def _apply(self, fn, recurse: bool = True):  # nn.Module's hook behind .to(), .float(), ...
        out = super()._apply(fn, recurse)
        self.refresh()
        return out

    def refresh(self) -> None:
        self.resolved = [tuple(getattr(self, n) if isinstance(n, str) and hasattr(self, n) else n for n in g)
                         for g in getattr(self, "groups", [])]


# ----------------------------------------------------------------------------- embeddings
class FastEmbeddings(_Buffers):
    """Word (+ trigram) embedding with its projection, position and type tables and the norm folded in."""

    def __init__(self, emb: nn.Module, config: MobileBertConfig, trigram_tables: bool = False) -> None:
        super().__init__()
        self.trigram = config.trigram_input
        self.padding_invariant = config.padding_invariant
        self.tables = trigram_tables
        H = config.hidden_size
        word = emb.word_embeddings.weight.detach().double()
        pos = emb.position_embeddings.weight.detach().double()
        tt = emb.token_type_embeddings.weight.detach().double()
        if emb.embedding_transformation is not None:
            W, b = _lin(emb.embedding_transformation)  # (H, k*E)
        else:
            W, b = None, torch.zeros(H, dtype=torch.float64)
        self.ln = _ln(emb.LayerNorm)
        if self.ln is None:  # NoNorm folds into the projection and both tables
            s, t = _norm_affine(emb.LayerNorm)
            if W is not None:
                W = W * s[:, None]
            else:
                word = word * s
            pos, tt, b = pos * s, tt * s, b * s + t
        else:
            self.ln_w, self.ln_b = self.put("ln_w", self.ln[0]), self.put("ln_b", self.ln[1])
            self.ln_eps = self.ln[2]
        self.pos = self.put("pos", pos)
        self.tt = self.put("tt", tt + b)  # the projection bias rides on the (always added) type row
        self.k = 3 if self.trigram else 1
        if W is not None:
            E = word.shape[1]
            # [W_next; W_cur; W_prev]: each (H, E); one GEMM then shifted adds replaces the 3E-wide concat.
            Wcat = torch.cat([W[:, i * E:(i + 1) * E] for i in range(self.k)])  # (k*H, E)
            if self.tables:
                self.word = self.put("word", word @ Wcat.t())  # (V, k*H): no GEMM at run time
                self.proj = None
            else:
                self.word = self.put("word", word)
                self.proj = self.put("proj", Wcat)
        else:
            self.word, self.proj = self.put("word", word), None
        self.H = H

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None, attention_mask: Tensor | None) -> Tensor:
        B, T = input_ids.shape
        y = F.embedding(input_ids, self.word)  # (B, T, E) or (B, T, k*H) with tables
        if self.padding_invariant and attention_mask is not None:
            y = y * attention_mask.unsqueeze(-1).to(y.dtype)  # padded tokens contribute nothing to neighbours
        if self.proj is not None:
            y = y @ self.proj.t()  # (B, T, k*H)
        if self.k == 3:
            H = self.H
            h = y[..., H:2 * H] + F.pad(y[:, 1:, :H], (0, 0, 0, 1)) + F.pad(y[:, :-1, 2 * H:], (0, 0, 1, 0))
        else:
            h = y
        h = h + self.pos[:T]
        h = h + (self.tt[0] if token_type_ids is None else F.embedding(token_type_ids, self.tt))
        if self.ln is not None:
            h = F.layer_norm(h, (self.H,), self.ln_w, self.ln_b, self.ln_eps)
        return h.reshape(B * T, self.H)


# ----------------------------------------------------------------------------- blocks
def _attend(q: Tensor, k: Tensor, v: Tensor, B: int, T: int, nh: int, mask: Tensor | None) -> Tensor:
    """(B*T, D) q, k, v -> (B*T, D) context through SDPA."""
    D = q.shape[-1]
    hs = D // nh
    q, k, v = (t.reshape(B, T, nh, hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return ctx.transpose(1, 2).reshape(B * T, D)


class FoldedBlock(_Buffers):
    """A NoNorm bottleneck block with every foldable NoNorm folded (the MobileBERT / TINY fast path).

    x-GEMM -> [attention residual (already scaled) | Q | K | V]; attention; then FFNs as
    ``addmm(addcmul(c, a, w), act(a W1^T + b1), (w W2)^T)``; the last FFN's norm folds into the output
    bottleneck, whose residual x keeps its NoNorm scale.
    """

    def __init__(self, layer: MobileBertLayer, config: MobileBertConfig) -> None:
        super().__init__()
        self.nh, self.D, self.act = config.num_attention_heads, config.true_hidden_size, ACTS[config.hidden_act]
        bn = layer.bottleneck
        li = _then_scale(_lin(bn.input.dense), *_norm_affine(bn.input.LayerNorm))  # layer_input from x
        sources = {"x": None, "bottleneck": li}
        if bn.attention is not None:
            sources["shared"] = _then_scale(_lin(bn.attention.dense), *_norm_affine(bn.attention.LayerNorm))

        def from_x(lin: nn.Linear, src: str) -> Affine:
            return _lin(lin) if sources[src] is None else _compose(_lin(lin), sources[src])

        sa = layer.attention.self
        q, k, v = from_x(sa.query, layer.qk_source), from_x(sa.key, layer.qk_source), from_x(sa.value, layer.v_source)
        # a = w (W_o ctx + b_o + layer_input) + beta: the residual part (w * layer_input + w b_o + beta) comes out
        # of the x-GEMM already scaled, so the attention output is one addmm.
        Wo, bo = _lin(layer.attention.output.dense)
        s, t = _norm_affine(layer.attention.output.LayerNorm)
        res = (li[0] * s[:, None], (li[1] + bo) * s + t)
        Wx, bx = _stack(res, q, k, v)
        self.Wx_t, self.bx = self.put("Wx_t", Wx.t()), self.put("bx", bx)
        self.Wo_t = self.put("Wo_t", (Wo * s[:, None]).t())
        # Extra FFNs: a' = s (W2 h + b2 + a) + t = addcmul(s b2 + t, a, s) + h (s W2)^T.
        self.groups = []
        for i, f in enumerate(layer.ffn):
            W1, b1 = _lin(f.intermediate.dense)
            W2, b2 = _lin(f.output.dense)
            s, t = _norm_affine(f.output.LayerNorm)
            tensors = {"W1": W1.t(), "b1": b1, "W2": (W2 * s[:, None]).t(), "c": s * b2 + t, "s": s}
            for n, v in tensors.items():
                self.put(f"{n}_{i}", v)
            self.groups.append([f"{n}_{i}" for n in tensors])
        # Last FFN: o_raw = W2 h + a; its NoNorm (and b2) fold into the output bottleneck's columns.
        W1, b1 = _lin(layer.intermediate.dense)
        W2, b2 = _lin(layer.output.dense)
        so, to = _norm_affine(layer.output.LayerNorm)
        Wb, bb = _lin(layer.output.bottleneck.dense)
        sb, tb = _norm_affine(layer.output.bottleneck.LayerNorm)
        Wb_f = Wb * so[None, :]
        bb_f = Wb @ (so * b2 + to) + bb
        self.W1_t, self.b1, self.W2_t = self.put("W1_t", W1.t()), self.put("b1", b1), self.put("W2_t", W2.t())
        self.Wb_t = self.put("Wb_t", (Wb_f * sb[:, None]).t())
        self.cb, self.sb = self.put("cb", sb * bb_f + tb), self.put("sb", sb)
        self.refresh()

    def forward(self, x: Tensor, B: int, T: int, mask: Tensor | None) -> Tensor:
        D = self.D
        y = torch.addmm(self.bx, x, self.Wx_t)  # (B*T, 4D): [residual | q | k | v]
        ctx = _attend(y[:, D:2 * D], y[:, 2 * D:3 * D], y[:, 3 * D:], B, T, self.nh, mask)
        a = torch.addmm(y[:, :D], ctx, self.Wo_t)
        for W1_t, b1, W2_t, c, s in self.resolved:
            a = torch.addmm(torch.addcmul(c, a, s), self.act(torch.addmm(b1, a, W1_t)), W2_t)
        o = torch.addmm(a, self.act(torch.addmm(self.b1, a, self.W1_t)), self.W2_t)
        return torch.addmm(torch.addcmul(self.cb, x, self.sb), o, self.Wb_t)


class FusedBlock(_Buffers):
    """Any other block (LayerNorm, or no bottleneck): fused GEMMs, norms kept as they are."""

    def __init__(self, layer: MobileBertLayer, config: MobileBertConfig) -> None:
        super().__init__()
        self.nh, self.act = config.num_attention_heads, ACTS[config.hidden_act]
        self.D, self.H = config.true_hidden_size, config.hidden_size
        self.eps: dict[str, float | None] = {}  # None: NoNorm (an affine map), else LayerNorm eps
        bn, sa = layer.bottleneck, layer.attention.self
        self.qk_src, self.v_src = layer.qk_source, layer.v_source
        parts: list[tuple[str, Affine]] = []  # what the x-GEMM produces, in order
        if bn is not None:
            parts.append(("li", _lin(bn.input.dense)))
            self._norm("li", bn.input.LayerNorm)
            if bn.attention is not None:
                parts.append(("sh", _lin(bn.attention.dense)))
                self._norm("sh", bn.attention.LayerNorm)
        if self.qk_src == "x":
            parts += [("q", _lin(sa.query)), ("k", _lin(sa.key))]
        if self.v_src == "x":
            parts.append(("v", _lin(sa.value)))
        self.slices, start = {}, 0
        for name, f in parts:
            self.slices[name] = (start, start + f[0].shape[0])
            start += f[0].shape[0]
        Wx, bx = _stack(*(f for _, f in parts))
        self.Wx_t, self.bx = self.put("Wx_t", Wx.t()), self.put("bx", bx)
        # Projections that read a normed bottleneck: Q|K from "sh", or Q|K|V from "li".
        second = [f for src, f in ((self.qk_src, _lin(sa.query)), (self.qk_src, _lin(sa.key)),
                                   (self.v_src, _lin(sa.value))) if src != "x"]
        if second:
            W2, b2 = _stack(*second)
            self.Wqkv_t, self.bqkv = self.put("Wqkv_t", W2.t()), self.put("bqkv", b2)
        self.put_linear("Wo_t", "bo", layer.attention.output.dense)
        self._norm("ao", layer.attention.output.LayerNorm)
        self.groups = []
        ffns = [(f.intermediate.dense, f.output.dense, f.output.LayerNorm) for f in layer.ffn]
        ffns.append((layer.intermediate.dense, layer.output.dense, layer.output.LayerNorm))
        for i, (d1, d2, norm) in enumerate(ffns):
            (W1, b1), (W2, b2) = _t(_lin(d1)), _t(_lin(d2))
            for n, v in (("W1", W1), ("b1", b1), ("W2", W2), ("b2", b2)):
                self.put(f"{n}_{i}", v)
            self._norm(f"ffn{i}", norm)
            self.groups.append([f"W1_{i}", f"b1_{i}", f"W2_{i}", f"b2_{i}", f"n_ffn{i}_w", f"n_ffn{i}_b",
                                self.eps[f"ffn{i}"]])
        self.bottleneck = layer.output.bottleneck is not None
        if self.bottleneck:
            self.put_linear("Wb_t", "bb", layer.output.bottleneck.dense)
            self._norm("out", layer.output.bottleneck.LayerNorm)
        self.refresh()

    def _norm(self, name: str, norm: nn.Module) -> None:
        ln = _ln(norm)
        w, b = (ln[0], ln[1]) if ln is not None else _norm_affine(norm)
        self.put(f"n_{name}_w", w)
        self.put(f"n_{name}_b", b)
        self.eps[name] = ln[2] if ln else None

    def _normed(self, name: str, x: Tensor) -> Tensor:
        return _norm_fn(x, getattr(self, f"n_{name}_w"), getattr(self, f"n_{name}_b"), self.eps[name])

    def _sl(self, y: Tensor, name: str) -> Tensor:
        a, b = self.slices[name]
        return y[:, a:b]

    def forward(self, x: Tensor, B: int, T: int, mask: Tensor | None) -> Tensor:
        D = self.D
        y = torch.addmm(self.bx, x, self.Wx_t)
        li = self._normed("li", self._sl(y, "li")) if "li" in self.slices else x
        if self.qk_src == "shared":
            qk = torch.addmm(self.bqkv, self._normed("sh", self._sl(y, "sh")), self.Wqkv_t)
            q, k, v = qk[:, :D], qk[:, D:], self._sl(y, "v")
        elif self.qk_src == "bottleneck":
            qkv = torch.addmm(self.bqkv, li, self.Wqkv_t)
            q, k, v = qkv[:, :D], qkv[:, D:2 * D], qkv[:, 2 * D:]
        else:
            q, k, v = self._sl(y, "q"), self._sl(y, "k"), self._sl(y, "v")
        ctx = _attend(q, k, v, B, T, self.nh, mask)
        a = self._normed("ao", torch.addmm(self.bo, ctx, self.Wo_t) + li)
        for W1, b1, W2, b2, nw, nb, eps in self.resolved:
            a = _norm_fn(torch.addmm(b2, self.act(torch.addmm(b1, a, W1)), W2) + a, nw, nb, eps)
        if not self.bottleneck:
            return a
        return self._normed("out", torch.addmm(self.bb, a, self.Wb_t) + x)


def _norm_fn(x: Tensor, w: Tensor, b: Tensor, eps: float | None) -> Tensor:
    return torch.addcmul(b, x, w) if eps is None else F.layer_norm(x, (x.shape[-1],), w, b, eps)


def _t(f: Affine) -> Affine:
    return f[0].t(), f[1]


# ----------------------------------------------------------------------------- the model
class FastMobileBert(_Buffers):
    """Inference-only twin of a MobileBERT model: same call signature, same output field names.

    Build it with :func:`optimize_for_inference`. ``forward(input_ids, attention_mask=None,
    token_type_ids=None, output_hidden_states=False)``; losses, attention maps and dropout are not available.
    """

    def __init__(self, model: nn.Module, trigram_tables: bool = False) -> None:
        super().__init__()
        self.head = head_of(model)  # checkpoint.HEAD_CLASSES' names
        self._output_names = tuple(output_names(model))
        self.config: MobileBertConfig = copy.deepcopy(model.config)
        base = model if isinstance(model, MobileBertModel) else model.mobilebert
        c = self.config
        self.embeddings = FastEmbeddings(base.embeddings, c, trigram_tables)
        folded = c.normalization_type == "no_norm" and c.use_bottleneck
        self.blocks = nn.ModuleList((FoldedBlock if folded else FusedBlock)(layer, c) for layer in base.encoder.layer)
        self.has_pooler = base.pooler is not None
        self.pooler_dense = None
        if base.pooler is not None and base.pooler.dense is not None:
            self.pooler_dense = _t(_lin(base.pooler.dense))
            self.pool_W, self.pool_b = self.put("pool_W", self.pooler_dense[0]), self.put("pool_b", self.pooler_dense[1])
        if self.head == "classifier":
            self.put_linear("cls_W", "cls_b", model.classifier)
        elif self.head == "qa":
            self.put_linear("qa_W", "qa_b", model.qa_outputs)
        elif self.head == "token":
            self.put_linear("tok_W", "tok_b", model.classifier)
        elif self.head in ("mlm", "pretraining"):
            p = model.cls.predictions
            self.put_linear("mlm_W", "mlm_b", p.transform.dense)
            self.mlm_ln_w, self.mlm_ln_b = self.put("mlm_ln_w", p.transform.LayerNorm.weight.detach()), \
                self.put("mlm_ln_b", p.transform.LayerNorm.bias.detach())
            self.mlm_eps = float(p.transform.LayerNorm.eps)
            parts = [p.word_embeddings[0].weight.detach().t()]  # (E, V) tied, then the untied (H - E, V) rest
            if getattr(p, "extra", None) is not None and p.extra.numel():
                parts.append(p.extra.detach())
            dec = torch.cat(parts)  # (H, V): one GEMM
            self.dec, self.dec_b = self.put("dec", dec), self.put("dec_b", p.bias.detach())
            if self.head == "pretraining":
                self.put_linear("nsp_W", "nsp_b", model.cls.seq_relationship)
        self.act = ACTS[c.hidden_act]
        self.out_dtype = torch.float32
        self.eval()

    def _mask(self, attention_mask: Tensor | None) -> Tensor | None:
        """(B, T) 0/1 -> boolean (B, 1, 1, T) for SDPA; None when nothing is masked (outside export)."""
        if attention_mask is None:
            return None
        exporting = torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
        if not exporting and bool(attention_mask.all()):
            return None
        mask = attention_mask[:, None, None, :].bool()
        if exporting:  # ONNX Attention (opset 23) in ONNX Runtime wants a mask with the query axis spelled out
            B, T = attention_mask.shape
            mask = mask.expand(B, 1, T, T)
        return mask

    @torch.no_grad()
    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                output_hidden_states: bool = False, **unsupported) -> ModelOutput:
        bad = [k for k, v in unsupported.items() if v not in (None, False)]
        if bad:
            raise ValueError(f"the optimized inference model does not support {', '.join(bad)}; use the eager model")
        B, T = input_ids.shape
        limit = self.config.max_position_embeddings
        if input_ids.shape[1] > limit:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings {limit}; truncate the input")
        mask = self._mask(attention_mask)
        h = self.embeddings(input_ids, token_type_ids, attention_mask)  # (B*T, H)
        hidden = [h]
        for block in self.blocks:
            h = block(h, B, T, mask)
            if output_hidden_states:
                hidden.append(h)
        H = h.shape[-1]
        seq = h.view(B, T, H)
        hs = tuple(x.view(B, T, H).to(self.out_dtype) for x in hidden) if output_hidden_states else None
        f = self.out_dtype
        if self.head == "classifier":
            return ModelOutput(logits=(self._pool(seq) @ self.cls_W + self.cls_b).to(f), hidden_states=hs)
        if self.head == "token":  # a label per token: (B, T, num_labels)
            return ModelOutput(logits=torch.addmm(self.tok_b, h, self.tok_W).view(B, T, -1).to(f), hidden_states=hs)
        if self.head == "qa":
            start, end = torch.addmm(self.qa_b, h, self.qa_W).view(B, T, 2).to(f).unbind(-1)
            return ModelOutput(start_logits=start, end_logits=end, hidden_states=hs)
        if self.head in ("mlm", "pretraining"):
            t = F.layer_norm(self.act(torch.addmm(self.mlm_b, h, self.mlm_W)), (H,), self.mlm_ln_w, self.mlm_ln_b,
                             self.mlm_eps)
            logits = torch.addmm(self.dec_b, t, self.dec).view(B, T, -1).to(f)
            if self.head == "mlm":
                return ModelOutput(logits=logits, last_hidden_state=seq.to(f), hidden_states=hs)
            nsp = (self._pool(seq) @ self.nsp_W + self.nsp_b).to(f)
            return ModelOutput(prediction_logits=logits, seq_relationship_logits=nsp, last_hidden_state=seq.to(f),
                               hidden_states=hs)
        pooled = self._pool(seq).to(f) if self.has_pooler else None
        return ModelOutput(last_hidden_state=seq.to(f), pooler_output=pooled, hidden_states=hs)

    def _pool(self, seq: Tensor) -> Tensor:
        cls = seq[:, 0]
        return cls if self.pooler_dense is None else torch.tanh(cls @ self.pool_W + self.pool_b)

    def output_names(self) -> list[str]:
        """Output fields this model fills (ONNX output names)."""
        return list(self._output_names)


def output_names(model: nn.Module) -> list[str]:
    """The output fields a MobileBERT model (any head) fills, in the order every export writes them; read off the
    model, so an exporter need not build the optimized twin to know them."""
    head = head_of(model)
    if head == "encoder":
        return ["last_hidden_state"] + (["pooler_output"] if model.pooler is not None else [])
    return {"classifier": ["logits"], "token": ["logits"], "qa": ["start_logits", "end_logits"],
            "mlm": ["logits", "last_hidden_state"],
            "pretraining": ["prediction_logits", "seq_relationship_logits", "last_hidden_state"]}[head]


def optimize_for_inference(model: nn.Module, dtype: torch.dtype = torch.float32,
                           trigram_tables: bool = False) -> FastMobileBert:
    """The fast inference twin of ``model`` (left untouched). ``dtype=torch.bfloat16`` runs in bf16 (outputs
    are returned in float32); ``trigram_tables`` trades 3 x vocab x hidden floats for the embedding GEMM."""
    fast = FastMobileBert(model, trigram_tables=trigram_tables)
    if dtype != torch.float32:
        fast = fast.to(dtype)
    return fast


__all__ = ["FastMobileBert", "optimize_for_inference", "output_names"]
