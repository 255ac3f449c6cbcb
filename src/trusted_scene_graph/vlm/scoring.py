"""From a generative VLM's next-token logits to a yes/no answer, its probability and the NMLP confidence.

Pure numpy/scipy on arrays, so the arithmetic is testable on hand-made logits without a model:

- **probability**: at the first generated position, the probability mass of the "yes" tokens against that of the
  "no" tokens, renormalised over the two (``p_yes = P(yes) / (P(yes) + P(no))``). Tokenizers have several spellings
  of each word ("yes", "Yes", "▁yes", ...); every single-token spelling counts, summed in probability. The answer is
  "yes" when ``p_yes > 0.5`` (a tie answers "no": a claim is not endorsed without evidence) and ``probability`` is
  the probability of the answer given, so it is at least 0.5.
- **NMLP** (negative mean log-probability of the top-k tokens): at each generated position, minus the mean of the
  ``k`` largest log-softmax values over the vocabulary, averaged over the generated positions. This is the token
  confidence of "Deep Think with Confidence" (Fu et al. 2025) that CA-TTS uses: a peaked distribution (one token
  near probability 1, the others far below) gives a large value, a flat one a small value (``ln V`` for a uniform
  distribution over V tokens, the minimum). ``k`` is :data:`NMLP_TOP_K` = 20 unless given, as in that work.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit, log_softmax, logsumexp

from trusted_scene_graph.vlm.base import VlmError

NMLP_TOP_K = 20


def _logit_matrix(logits: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(logits, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] < 2:
        raise VlmError(f"{name} must be (generated tokens, vocabulary) with at least one token and two vocabulary "
                       f"entries, got shape {np.shape(logits)}")
    if np.isnan(array).any():
        raise VlmError(f"{name} contain NaN")
    return array


def yes_probability(first_logits: np.ndarray, yes_ids: Sequence[int], no_ids: Sequence[int]) -> float:
    """``P(yes) / (P(yes) + P(no))`` from the logits (V,) of the first generated position."""
    logits = _logit_matrix(first_logits, "first-position logits")[0]
    vocabulary_size = logits.shape[0]
    for name, ids in (("yes", yes_ids), ("no", no_ids)):
        if len(ids) == 0:
            raise VlmError(f"no token ids given for {name!r}")
        bad = [i for i in ids if not 0 <= i < vocabulary_size]
        if bad:
            raise VlmError(f"{name!r} token ids {bad} are outside the vocabulary of {vocabulary_size} tokens")
    if set(yes_ids) & set(no_ids):
        raise VlmError(f"token ids {sorted(set(yes_ids) & set(no_ids))} are both 'yes' and 'no'")
    # The softmax normaliser cancels in the ratio: the log-odds are a difference of log-sum-exps.
    return float(expit(logsumexp(logits[list(yes_ids)]) - logsumexp(logits[list(no_ids)])))


def nmlp(logits: np.ndarray, top_k: int = NMLP_TOP_K) -> float:
    """Mean over generated positions of ``-mean(top-k log-softmax)`` (see the module docstring); logits (T, V)."""
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise VlmError(f"NMLP top_k must be a positive integer, got {top_k!r}")
    log_probs = log_softmax(_logit_matrix(logits, "logits"), axis=-1)
    k = min(int(top_k), log_probs.shape[1])
    top = -np.partition(-log_probs, k - 1, axis=-1)[:, :k]  # the k largest per row, in any order
    return float(np.mean(-np.mean(top, axis=-1)))


def answer_from_logits(logits: np.ndarray, yes_ids: Sequence[int], no_ids: Sequence[int],
                       top_k: int = NMLP_TOP_K) -> tuple[bool, float, float]:
    """``(answer, probability of that answer, nmlp)`` from the logits (T, V) of the generated positions."""
    matrix = _logit_matrix(logits, "logits")
    p_yes = yes_probability(matrix[0], yes_ids, no_ids)
    answer = p_yes > 0.5
    return answer, (p_yes if answer else 1.0 - p_yes), nmlp(matrix, top_k)
