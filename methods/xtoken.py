"""xtoken — projection-guided cross-tokenizer KD (X-Token, NVIDIA; NeMo-RL @ 7ea279a; spec §18, §18.8).

Chunks are the byte-span groups of :mod:`methods.spans` (what NeMo's pending PR #3286 moves to; §18.8) instead of
NeMo's Needleman–Wunsch alignment: each group's student rows and teacher rows predict the same answer bytes. A chunk
is valid when it is in the batch (with ``exact_token_match_only``: when it is one token per side writing the same
bytes). W is :mod:`methods.projection_matrix` (recipe named in the config), built once per pair and cached by the
harness's pair cache.

* ``loss = "pkl"`` (default, §18.3): K = the ``vocab_topk`` teacher ids with the largest logit over the micro-batch's
  teacher answer rows; per chunk c, ``S_c`` = mean over its student rows of ``Wᵀ softmax(z_s/T)`` on K, renormalised,
  ``log(S_c + 1e-10)``; ``A_c`` = mean over its teacher rows of ``log softmax(z_t[K]/T)``;
  ``KL_c = Σ_K e^{A_c}(A_c − S_c)`` (``reverse_kl``: ``Σ_K e^{S_c}(S_c − A_c)``); KD = T²·mean over valid chunks.
  Logged: ``proj_accuracy`` (chunks whose argmax S_c = argmax A_c).
* ``loss = "gold"`` / ``"hkl"`` (§18.4): common pairs C from W (best weight 1.0 / ≥ 0.6); chunk log-probs
  ``B^s_c``, ``B^t_c`` (means of log-softmaxes over the full vocabularies);
  KD = T²·mean_c [Σ_C e^{B^t_c[t]}(B^t_c[t] − B^s_c[s]) + Σ_{r<R} |sort↓ e^{B^s_c[U_s]} − sort↓ e^{B^t_c[U_t]}|_r].
* ``L = sg(|CE| / |KD|)·KD + CE`` with ``dynamic_loss_scaling`` (§18.5), else ``kl_loss_weight·KD +
  ce_loss_scale·CE``. ``chunk_share``: share of the answer bytes in valid chunks.

The mean over chunks is per micro-batch (as every method's token means); NeMo divides by the chunks of the global
batch summed over all ranks (§18.8; the same value with one micro-batch per step and one process).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods.base import MethodConfig, TeacherRequest, param
from methods.batch import DistillBatch, TeacherOutputs
from methods.projection_matrix import RECIPES, Projection
from methods.registry import METHODS
from methods.resources import PairResources
from methods.spans import ByteAlignedMethod, SideGroups

LOSSES: tuple[str, ...] = ("pkl", "gold", "hkl")
COMMON_THRESHOLD = {"gold": 1.0, "hkl": 0.6}  # [code: exact map; H-KL best weight >= 0.6]


@dataclass(frozen=True)
class XTokenConfig(MethodConfig):
    """X-Token's defaults (``xtoken_off_policy_distillation.yaml``) unless marked otherwise."""

    loss: str = param("pkl", choices=LOSSES)  # [code: gold_loss false]; "gold" = gold_loss, "hkl" = gold_loss + xtoken_loss
    recipe: str = param("wrapper", choices=RECIPES)  # [code: build_projection_matrix.sh; §18.8]; "one-step" = the nightly test's build
    temperature: float = param(1.0, "positive")  # T [code]
    vocab_topk: int = param(8192, "positive")  # [code]
    uncommon_topk: int = param(8192, "positive")  # [code]
    reverse_kl: bool = False  # [code]
    exact_token_match_only: bool = False  # [code]
    dynamic_loss_scaling: bool = True  # [code]
    kl_loss_weight: float = 1.0  # [code]
    ce_loss_scale: float = 0.1  # [code]


def chunk_mean(side: SideGroups, values: Tensor) -> Tensor:
    """``values [B, A, X]`` averaged over each group's tokens -> ``[B, G, X]`` (0 for groups without tokens)."""
    index = side.member.clamp_min(0).unsqueeze(-1).expand(-1, -1, values.size(-1))
    kept = torch.where((side.member >= 0).unsqueeze(-1), values, torch.zeros((), dtype=values.dtype, device=values.device))
    sums = torch.zeros(*side.first.shape, values.size(-1), dtype=values.dtype, device=values.device)
    if sums.size(1) == 0:
        return sums
    counts = side.group_sum(torch.ones_like(side.member, dtype=values.dtype))
    return sums.scatter_add(1, index, kept) / counts.clamp_min(1).unsqueeze(-1)


def projection_operator(projection: Projection, student_size: int, teacher_size: int, device: torch.device) -> Tensor:
    """Wᵀ as a sparse ``[teacher_size, student_size]`` matrix (entries outside either size dropped)."""
    ids, weights = (torch.as_tensor(x, device=device) for x in (projection.ids, projection.weights))
    rows = torch.arange(ids.size(0), device=device).unsqueeze(1).expand_as(ids)
    keep = (ids >= 0) & (ids < teacher_size) & (rows < student_size)
    return torch.sparse_coo_tensor(torch.stack([ids[keep], rows[keep]]), weights[keep].float(),
                                   (teacher_size, student_size), check_invariants=False).coalesce()


def projected_probs(student_probs: Tensor, operator: Tensor) -> Tensor:
    """``Wᵀ p`` for student distributions ``[..., V_s]`` -> ``[..., V_t]`` (``operator``: :func:`projection_operator`)."""
    flat = student_probs.reshape(-1, student_probs.size(-1)).float()
    return torch.sparse.mm(operator, flat.T).T.reshape(*student_probs.shape[:-1], operator.size(0))


@METHODS.register("xtoken")
class XToken(ByteAlignedMethod):
    """X-Token's projected KL on byte-span chunks (spec §18, §18.8)."""

    config_class = XTokenConfig
    config: XTokenConfig
    projection: Projection

    def teacher_request(self) -> TeacherRequest:
        return TeacherRequest(needs="full_logits")

    def prepare(self, resources: PairResources) -> None:
        super().prepare(resources)
        self.set_projection(resources.projection(self.config.recipe))

    def set_projection(self, projection: Projection) -> None:
        """Use ``projection`` as W (``prepare`` reads it from the pair cache; tests hand-build one)."""
        self.projection, self._operator_key = projection, None
        if self.config.loss != "pkl":
            s, t = projection.exact_pairs(COMMON_THRESHOLD[self.config.loss])
            if not len(s):
                raise ValueError(f"xtoken loss {self.config.loss!r}: the projection ({self.config.recipe} recipe) has no "
                                 f"row of best weight >= {COMMON_THRESHOLD[self.config.loss]}, so the common set is empty")
            self._common = torch.as_tensor(s), torch.as_tensor(t)

    def loss(self, batch: DistillBatch, student_logits: Tensor, teacher: TeacherOutputs | None, ce: Tensor) -> dict[str, Tensor]:
        cfg = self.config
        groups = self.pair.group(batch)
        valid = groups.mask & groups.exact if cfg.exact_token_match_only else groups.mask
        z_s = batch.student.gather_answer_rows(student_logits).float() / cfg.temperature
        z_t = self.teacher_logits(teacher).float()[..., : self.pair.teacher.size] / cfg.temperature
        if cfg.loss == "pkl":
            per_chunk, accurate = self._pkl(groups.student, groups.teacher, z_s, z_t, batch.teacher.answer_mask)
        else:
            per_chunk, accurate = self._common_and_sorted(groups.student, groups.teacher, z_s, z_t), None
        chunks = valid.sum().clamp_min(1)
        kd = cfg.temperature ** 2 * torch.where(valid, per_chunk, 0.0).sum() / chunks
        if cfg.dynamic_loss_scaling:
            scale = torch.where(kd.detach().abs() > 0, ce.detach().abs() / kd.detach().abs().clamp_min(1e-30), 1.0)
            loss = scale * kd + ce
        else:
            loss = cfg.kl_loss_weight * kd + cfg.ce_loss_scale * ce
        terms = {"loss": loss, "ce": ce.detach(), "kd": kd.detach(), "chunk_share": groups.byte_share(valid)}
        if accurate is not None:
            terms["proj_accuracy"] = (torch.where(valid, accurate, False).sum() / chunks).float()
        return terms

    def _pkl(self, s_side: SideGroups, t_side: SideGroups, z_s: Tensor, z_t: Tensor, t_mask: Tensor) -> tuple[Tensor, Tensor]:
        """KL_c per chunk ``[B, G]`` and whether its two argmaxes agree."""
        importance = torch.where(t_mask.unsqueeze(-1), z_t, -torch.inf).flatten(0, 1).amax(0)
        top = importance.topk(min(self.config.vocab_topk, importance.numel())).indices
        projected = projected_probs(z_s.softmax(-1), self._operator(z_s.size(-1), z_t.size(-1), z_s.device))[..., top]
        s_chunk = chunk_mean(s_side, projected)
        s_log = (s_chunk / s_chunk.sum(-1, keepdim=True).clamp_min(1e-30) + 1e-10).log()
        a_log = chunk_mean(t_side, z_t[..., top].log_softmax(-1))
        if self.config.reverse_kl:
            per_chunk = (s_log.exp() * (s_log - a_log)).sum(-1)
        else:
            per_chunk = (a_log.exp() * (a_log - s_log)).sum(-1)
        return per_chunk, s_log.argmax(-1) == a_log.argmax(-1)

    def _operator(self, student_size: int, teacher_size: int, device: torch.device) -> Tensor:
        """Wᵀ for these sizes and device, built once (rebuilding the sparse matrix every step costs as much as the loss)."""
        key = (student_size, teacher_size, device)
        if getattr(self, "_operator_key", None) != key:
            self._operator_key, self._operator_cache = key, projection_operator(self.projection, *key)
        return self._operator_cache

    def _common_and_sorted(self, s_side: SideGroups, t_side: SideGroups, z_s: Tensor, z_t: Tensor) -> Tensor:
        """KL on the common pairs plus the sorted L1 of the uncommon rest, per chunk ``[B, G]`` (§18.4)."""
        b_s = chunk_mean(s_side, z_s.log_softmax(-1))
        b_t = chunk_mean(t_side, z_t.log_softmax(-1))
        s_ids, t_ids = (ids.to(z_s.device) for ids in self._common)
        common_t = b_t[..., t_ids]
        kl = (common_t.exp() * (common_t - b_s[..., s_ids])).sum(-1)
        uncommon = [torch.ones(b.size(-1), dtype=torch.bool, device=b.device) for b in (b_s, b_t)]
        uncommon[0][s_ids], uncommon[1][t_ids] = False, False
        rank = min(int(uncommon[0].sum()), int(uncommon[1].sum()), self.config.uncommon_topk)
        sorted_s, sorted_t = (b[..., keep].exp().topk(rank, dim=-1).values for b, keep in zip((b_s, b_t), uncommon))
        return kl + (sorted_s - sorted_t).abs().sum(-1)
