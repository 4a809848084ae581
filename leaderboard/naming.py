"""What the dashboard calls the competition's sets, classes and pictures, from its rules (no Streamlit here).

The MNIST warm-up (no ``[task]`` table) keeps its words: "MNIST test", "Guest digits", digits 0-9. A competition with a
``[task]`` takes its sets' titles and its class names from ``competition.toml``. The board's frame keeps the public
set's columns under ``mnist_*`` and the secret's under ``guest_*`` whatever the task calls them (role slots, as
``harness.scoring.ranking.Row`` does); :attr:`Names.role` maps a stored kind to its slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.common.competition import Competition
from harness.data.task import Task, task_of

PUBLIC_SLOT, SECRET_SLOT = "mnist", "guest"
SHORT = 10  # characters a score column's title may have on the compact board (a phone's 390 px hold it)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Names:
    public_kind: str        # the stored kinds: ("mnist", "guest") or ("public", "secret")
    secret_kind: str
    public: str             # a set as a tab or a choice names it: "MNIST test" / "Shapes test"
    secret: str             # "Guest digits" / "The stranger's shapes"
    public_score: str       # before "accuracy" in a column or metric title: "MNIST" / "Shapes test"
    secret_score: str       # "Guest" / "The stranger's shapes"
    classes: tuple[str, ...]
    item: str               # one picture of the sets: "digit" / "picture"
    drawable: bool          # one channel: the Draw page is offered
    digits: bool            # handwriting on paper: the printable sheet and contact sheets apply

    @property
    def is_mnist(self) -> bool:
        return self.public_kind == PUBLIC_SLOT

    def role(self, kind: str) -> str:
        """The board frame's slot of a stored kind: "mnist" for the public set, "guest" for the secret one."""
        return SECRET_SLOT if kind == self.secret_kind else PUBLIC_SLOT

    def kind(self, slot: str) -> str:
        """The stored kind of a slot ("mnist"/"guest")."""
        return self.secret_kind if slot == SECRET_SLOT else self.public_kind

    def title(self, kind_or_slot: str) -> str:
        return self.secret if kind_or_slot in (self.secret_kind, SECRET_SLOT) else self.public

    def score(self, kind_or_slot: str) -> str:
        return self.secret_score if kind_or_slot in (self.secret_kind, SECRET_SLOT) else self.public_score

    def column(self, kind_or_slot: str) -> str:
        """The board's score column title before its arrow: the set's (``score``) when it is short enough for a
        phone's compact board ("MNIST", "Guest"), else "Accuracy" (the column's help names the set)."""
        said = self.score(kind_or_slot)
        return said if len(said) <= SHORT else "Accuracy"

    def label(self, index: int) -> str:
        """Class ``index`` by its name ("7" for a digit, "star" for a shape)."""
        return self.classes[int(index)]

    @property
    def axis_classes(self) -> list[str] | None:
        """The names charts write on their class axes, or None where the classes are the digits 0-9 (the axes
        then read the labels themselves)."""
        return None if self.classes == tuple(str(i) for i in range(len(self.classes))) else list(self.classes)


def names_of(rules: Competition | None, task: Task | None = None) -> Names:
    rules = rules or Competition()
    task = task or task_of(rules)
    public, secret = rules.set_kinds
    if rules.task is None:
        return Names(public, secret, "MNIST test", "Guest digits", "MNIST", "Guest", task.classes, "digit",
                     task.drawable, task.is_digits)
    return Names(public, secret, _capital(rules.task.public.title), _capital(rules.task.secret.title),
                 _capital(rules.task.public.title), _capital(rules.task.secret.title), task.classes,
                 "digit" if task.is_digits else "picture", task.drawable, task.is_digits)
