"""The classical baseline: openSMILE functionals + standardisation + a linear SVM (`functionals_svm`).

The speech emotion recognition baseline people check first (Schuller et al., the INTERSPEECH Computational
Paralinguistics challenges): one vector of statistics per utterance, ComParE_2016 (6373-d) or eGeMAPSv02 (88-d)
(`feature_set`, extracted once by the prepare step: the params stage asks for every set a run reads;
`mer_core.data.features.wave_functionals`), standardised with the mean and standard deviation of the fold's training
clips (`mer_core.data.batches`; with `train.normalisation: speaker`, first per speaker), then a one-vs-rest linear SVM
(scikit-learn's `LinearSVC`: squared hinge loss, L2 penalty, liblinear, `random_state` 0, so a unit is deterministic).

Model selection: one SVM is fitted on the training speakers for each `C` of the grid (in the order listed), and the one
with the best UA on the validation speakers (the full-modality condition; the earliest on ties) is kept; the test
speakers are never looked at. `history.csv` has one row per grid point: `epoch` (its position, from 1), `stopped` =
grid, `C`, the training and validation cross-entropy of the probabilities below, the validation UA, and
`solver_converged` (whether liblinear converged within `max_iter` iterations).

It is evaluated by the same grid as every method: the fitted SVM is an `nn.Module` (`LinearSVM`) whose forward returns
the decision values w_k . x + b_k, and the class probabilities in `predictions.csv` are their softmax (a monotone
mapping, not a calibration: the most probable class is the SVM's prediction; with two classes the logits are -d/2 and
d/2 of the one decision value d, so p = sigmoid(d)). Under a condition without audio the input is zero-filled as for
every method, i.e. the standardised vector is the training mean; under the signal corruptions the functionals of the
noisy audio are read (the prepare step extracts them for every audio variant).

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [functionals_svm] the classical baseline. Official: none of the four papers' repositories has it (the audio baseline
  of the Computational Paralinguistics challenges, openSMILE functionals and a linear SVM). Here: ComParE_2016 or
  eGeMAPSv02 functionals standardised with the fold's training statistics, scikit-learn's LinearSVC with C chosen on
  the validation speakers, class probabilities the softmax of its decision values. Why: the baseline a speech emotion
  model is compared with first. Restore: no official counterpart.
  Test: tests/test_speech.py::test_the_svm_fits_predicts_and_gives_probabilities.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.svm import LinearSVC
from torch import nn

from mer_core.data.batches import Batch, Split
from mer_core.evaluate import predict, selection_score
from mer_core.methods.registry import ModelContext, StageResult

EVAL_BATCH = 256  # clips per evaluation batch of a fitted SVM (it has no `optim` block)


class LinearSVM(nn.Module):
    """A fitted linear classifier of one vector per clip (the audio "frames" of the functionals view, (B, 1, D)):
    returns the decision values (B, n_classes). Its weights are buffers, set by `set_weights`."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.modalities = ("audio",)  # what it reads (so a face-crop frame encoder is never attached to it)
        self.register_buffer("coef", torch.zeros(n_classes, dim))
        self.register_buffer("intercept", torch.zeros(n_classes))

    def set_weights(self, classifier: LinearSVC) -> None:
        """Copy a fitted `LinearSVC`'s weights (two classes: the one decision value d as the logits -d/2, d/2)."""
        coef = torch.as_tensor(classifier.coef_, dtype=torch.float32)
        intercept = torch.as_tensor(classifier.intercept_, dtype=torch.float32)
        if len(coef) == 1:
            coef, intercept = torch.cat([-coef, coef]) / 2, torch.cat([-intercept, intercept]) / 2
        self.coef.copy_(coef)
        self.intercept.copy_(intercept)

    def forward(self, batch: Batch) -> torch.Tensor:
        x = batch.x["audio"][:, 0].to(self.coef.dtype)  # one vector per clip; zeros (the training mean) without audio
        return x @ self.coef.T + self.intercept


def svm_inputs(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(X (N, D), class indices (N,)) of the clips of `split` that have audio."""
    has_audio = split.has[:, split.modalities.index("audio")].numpy()
    return split.x["audio"][:, 0].numpy()[has_audio], split.y.numpy()[has_audio]


def fit_svm(model: LinearSVM, data: dict[str, Split], params: dict) -> StageResult:
    """Fit one `LinearSVC` per C of `params["C"]` on the training split, keep the best on the validation split (UA
    under the full-modality condition, earliest on ties), and set `model` to it (see the module docstring)."""
    x, y = svm_inputs(data["train"])
    full = [tuple(data["val"].modalities)]
    device = model.coef.device
    metric = data["val"].task.selection_metric
    rows, best = [], (-float("inf"), 0, None)
    for k, c in enumerate(params["C"], start=1):
        classifier = LinearSVC(
            C=c,
            class_weight=None if params["class_weight"] == "none" else "balanced",
            max_iter=params["max_iter"],
            random_state=0,
            dual=True,
        )
        classifier.fit(x, y)
        model.set_weights(classifier)
        val = predict(model, data["val"], EVAL_BATCH, device, full)
        train = predict(model, data["train"], EVAL_BATCH, device, full)
        score = selection_score(val, data["val"].task)
        rows.append(
            {
                "stage": "fit",
                "epoch": k,
                "C": c,
                "train_loss": train["loss"].mean(),
                "val_loss": val["loss"].mean(),
                f"val_{metric}": score,
                "solver_converged": bool(np.max(classifier.n_iter_) < params["max_iter"]),
            }
        )
        if score > best[0]:
            best = (score, k, {name: value.clone() for name, value in model.state_dict().items()})
    model.load_state_dict(best[2])
    history = pd.DataFrame(rows)
    history.insert(2, "stopped", "grid")  # how the stage ended, as a trained stage's history says it
    return StageResult(best[1], best[0], history)


def _build(params: dict, ctx: ModelContext, previous: None = None) -> nn.Module:
    return LinearSVM(ctx.dims["audio"], ctx.n_outputs)


BUILDERS = {"functionals_svm": {"fit": _build}}
FITTERS = {"functionals_svm": {"fit": fit_svm}}
