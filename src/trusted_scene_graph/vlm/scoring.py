"""From a generative VLM's next-token logits to a yes/no answer, its probability and the NMLP confidence.

Pure numpy/scipy on arrays, so the arithmetic is testable on hand-made logits without a model:

- **probability**: at the first generated position, ``P(yes)`` and ``P(no)`` are the softmax masses of the "yes"
  and "no" tokens. Tokenizers have several spellings of each word ("yes", "Yes", "▁yes", ...); every single-token
  spelling counts, summed in probability. The answer is "yes" when ``P(yes) > P(no)`` (a tie answers "no": a claim
  is not endorsed without evidence). The mass the model put on neither word (it opened with "The statement ...",
  "**Yes**", or is simply unsure) is evidence for neither answer, so it is split evenly between the two:
  ``probability = P(answer) + (1 - P(yes) - P(no)) / 2 = 0.5 + |P(yes) - P(no)| / 2``. It is at least 0.5, equals
  the renormalised ratio ``P(yes) / (P(yes) + P(no))`` only when the two words hold all the mass, and falls to 0.5
  as their mass (``answer_mass = P(yes) + P(no)``, kept on the answer) falls to 0. Renormalising over the two words
  alone would make a confident-looking answer from two tiny probabilities.
- **NMLP** (negative mean log-probability of the top-k tokens): at each generated position, minus the mean of the
  ``k`` largest log-softmax values over the vocabulary, averaged over the generated positions. This is the token
  confidence of "Deep Think with Confidence" (Fu et al. 2025) that CA-TTS uses: a peaked distribution (one token
  near probability 1, the others far below) gives a large value, a flat one a small value. Its minimum is ``ln k``:
  the ``k`` largest probabilities of a distribution sum to at most 1, so their mean log is at most ``ln(1/k)``, with
  equality when those k tokens share all the mass evenly (a uniform distribution over k tokens; a uniform one over
  all V tokens gives the larger ``ln V``). ``k`` is :data:`NMLP_TOP_K` = 20 unless given, as in that work. Tokens a
  model masks out (logit -inf) are left out of a position's top k; a logit of +inf or NaN is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import log_softmax, logsumexp

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
    # +inf makes the softmax inf/inf = NaN, which min() and comparisons would turn into a confident wrong answer.
    if np.isposinf(array).any():
        position, token = np.argwhere(np.isposinf(array))[0].tolist()
        raise VlmError(f"{name} contain +inf (generated position {position}, token {token})")
    # -inf is a masked-out token; a position with every token masked has no distribution.
    empty = np.flatnonzero(~np.isfinite(array).any(axis=1))
    if empty.size:
        raise VlmError(f"{name} at generated position {int(empty[0])} are -inf for every token")
    return array


def _checked_first_logits(first_logits: np.ndarray, yes_ids: Sequence[int], no_ids: Sequence[int]) -> np.ndarray:
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
    return logits


def nmlp(logits: np.ndarray, top_k: int = NMLP_TOP_K) -> float:
    """Mean over generated positions of ``-mean(top-k log-softmax)`` (see the module docstring); logits (T, V)."""
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise VlmError(f"NMLP top_k must be a positive integer, got {top_k!r}")
    log_probs = log_softmax(_logit_matrix(logits, "logits"), axis=-1)
    k = min(int(top_k), log_probs.shape[1])
    top = -np.partition(-log_probs, k - 1, axis=-1)[:, :k]  # the k largest per row, in any order
    # Masked tokens (-inf) among a row's k largest are left out: the mean is over the tokens the model could emit
    # (every row has at least one, see _logit_matrix).
    finite = np.isfinite(top)
    value = float(np.mean(-np.where(finite, top, 0.0).sum(axis=-1) / finite.sum(axis=-1)))
    if not np.isfinite(value):
        raise VlmError(f"the NMLP of the logits is not finite ({value}); the logits are too large to normalise")
    return value


def yes_no_masses(first_logits: np.ndarray, yes_ids: Sequence[int], no_ids: Sequence[int]) -> tuple[float, float]:
    """``(P(yes), P(no))``: the softmax masses of the two words' token ids in the logits (V,) of the first position."""
    logits = _checked_first_logits(first_logits, yes_ids, no_ids)
    log_normaliser = logsumexp(logits)
    # A token id given twice is one token: counted once (dict.fromkeys keeps the first of each, in order).
    masses = (float(np.exp(logsumexp(logits[list(dict.fromkeys(yes_ids))]) - log_normaliser)),
              float(np.exp(logsumexp(logits[list(dict.fromkeys(no_ids))]) - log_normaliser)))
    if not all(np.isfinite(masses)):
        raise VlmError(f"the yes/no probabilities of the first-position logits are not finite: {masses}")
    return masses


def answer_from_logits(logits: np.ndarray, yes_ids: Sequence[int], no_ids: Sequence[int],
                       top_k: int = NMLP_TOP_K) -> tuple[bool, float, float, float]:
    """``(answer, probability of that answer, nmlp, answer_mass)`` from the logits (T, V) of the generated positions
    (see the module docstring)."""
    matrix = _logit_matrix(logits, "logits")
    p_yes, p_no = yes_no_masses(matrix[0], yes_ids, no_ids)
    answer = p_yes > p_no
    probability = min(1.0, 0.5 + abs(p_yes - p_no) / 2)  # min: exp's rounding can put P(yes) a hair above 1
    return answer, probability, nmlp(matrix, top_k), min(1.0, p_yes + p_no)
