"""The one error of bad input: a config, a policy, a homenet or a request body."""
from __future__ import annotations


class FieldError(ValueError):
    """`where` is the dotted path of the first bad field ("homenets[0].egress_order[1]"),
    `problem` what is wrong with it; nothing was changed."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem
