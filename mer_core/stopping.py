"""How long a training stage runs and at what learning rate (`train.stopping`).

A stage's `optim` block gives `epochs` at the constant learning rate, then `epochs_decay` epochs of linear decay
(MMIN's `lambda` policy: in the k-th decay epoch, k = 1..epochs_decay, the factor is 1 - k / (epochs_decay + 1)).
After every epoch the stage scores its selection criterion on the validation clips (`mer_core.train`), and
`StageSchedule` decides from those scores:

- `fixed`: exactly `epochs` + `epochs_decay` epochs, the official schedules (`train.preset: paper` always uses it).
- `plateau`: the counts become maxima. The constant phase ends when the criterion has not improved on its best
  by more than `min_delta` for `patience` epochs, or after `epochs` epochs; the decay phase then starts from the
  learning rate reached, decays it as MMIN's does over at most `epochs_decay` epochs, and itself ends after
  `patience` epochs without improvement. A stage without a decay phase ends when its constant phase does. No
  plateau is declared before the stage has trained `min_epochs` epochs, nor before its criterion has risen above
  its first epoch's score by more than `min_delta`: a stage still at its starting level has not begun to learn (NMER's
  stage 2 stays at chance for its first epochs while its loss falls), so it has not converged; it trains on, at most
  to its maximum, where it is recorded as `max`.

Whatever the rule, the stage keeps its best epoch's weights (`mer_core.train`), and `StageSchedule.record` says how
it ended: epochs trained, why it stopped (`plateau`: the last phase stopped improving; `max`: it ran to its
maximum), the best epoch, and the criterion's gain over its last `patience` epochs (the best score minus the best
one before those epochs; about 0 for a plateau, positive for a stage cut while still improving).
"""

from __future__ import annotations

from dataclasses import dataclass, field

RULES = ("plateau", "fixed")  # `train.stopping.rule` (mer_core.params.training.Stopping)


def lr_factor(epoch: int, epochs: int, epochs_decay: int) -> float:
    """Learning-rate factor during epoch `epoch` (0-based) of a schedule with `epochs` constant epochs, then linear
    decay over `epochs_decay` epochs (MMIN's `lambda` policy: 1 - max(0, epoch + 1 - niter) / (niter_decay + 1))."""
    return 1.0 - max(0, epoch + 1 - epochs) / (epochs_decay + 1)


@dataclass
class StageSchedule:
    """The epochs of one stage: `factor()` is the learning-rate factor of the next epoch, `update(score)` records
    its validation score and returns whether another epoch follows."""

    epochs: int
    epochs_decay: int
    rule: str = "fixed"
    patience: int = 5
    min_epochs: int = 1
    min_delta: float = 0.0
    scores: list[float] = field(default_factory=list)
    decay_start: int | None = None  # epochs trained before the decay phase began
    stopped: str | None = None

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"stopping rule must be one of {RULES}, got {self.rule!r}")
        self._reference = -float("inf")  # the score the patience counts from
        self._waited = 0
        self._start: float | None = None  # the first finite score
        self._learning = False  # a later score has beaten `_start` by more than min_delta

    @classmethod
    def from_params(cls, optim: dict, stopping: dict) -> "StageSchedule":
        """The schedule of a stage's `optim` block under `train.stopping` (a rule alone: the other keys default)."""
        return cls(optim["epochs"], optim["epochs_decay"], **stopping)

    @property
    def phase(self) -> str:
        """The phase of the next epoch: constant (learning rate) or decay."""
        return "constant" if self.decay_start is None else "decay"

    @property
    def trained(self) -> int:
        return len(self.scores)

    def factor(self) -> float:
        """Learning-rate factor of the next epoch: 1 in the constant phase, 1 - k / (epochs_decay + 1) in the k-th
        decay epoch."""
        return 1.0 if self.decay_start is None else lr_factor(self.trained, self.decay_start, self.epochs_decay)

    def update(self, score: float) -> bool:
        """Record the score of the epoch just trained; True when another epoch follows."""
        self.scores.append(score)
        if self._start is None and score == score:
            self._start = score
        elif self._start is not None and score > self._start + self.min_delta:
            self._learning = True
        if score > self._reference + self.min_delta:
            self._reference, self._waited = score, 0
        else:
            self._waited += 1
        plateau = (
            self.rule == "plateau"
            and self._learning
            and self._waited >= self.patience
            and self.trained >= self.min_epochs
        )
        if self.decay_start is None:  # constant phase
            if self.trained < self.epochs and not plateau:
                return True
            if self.epochs_decay > 0:
                self.decay_start, self._waited = self.trained, 0
                return True
        elif self.trained - self.decay_start < self.epochs_decay and not plateau:
            return True
        self.stopped = "plateau" if plateau else "max"
        return False

    def record(self) -> dict:
        """How the stage ended: epochs, stopped, best_epoch (earliest of the best scores), decay_start (epochs
        before the decay phase, None without one), gain (over the last `patience` epochs; None when the stage
        trained no more epochs than that)."""
        valid = [(s, -e) for e, s in enumerate(self.scores, 1) if s == s]
        best = max(valid) if valid else (float("nan"), 0)
        before = [s for s in self.scores[: -self.patience] if s == s]
        gain = best[0] - max(before) if before and self.trained > self.patience else None
        return {
            "epochs": self.trained,
            "stopped": self.stopped,
            "best_epoch": -best[1],
            "decay_start": self.decay_start,
            "gain": gain,
        }
