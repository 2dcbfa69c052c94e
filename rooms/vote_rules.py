"""The arithmetic of a vote's outcome, as a pure function (shared/DOMAIN.md, "Rules a vote
and a quorum follow"): which base the counts are taken of, how many votes carry, the
percentages of the base, and the outcome in the body's words.

- The base is the body's voting members: all of them ("tổng số đại biểu", `all_members`) or
  those present when the vote closes (`present`), as the vote's rule says. Guests and people
  counted at a site by roll call are never in it (rooms/attendance.py says who counts).
- More than half ("quá nửa") of a base of n is n // 2 + 1 votes; two thirds is ceil(2n / 3).
- A motion (agree / disagree / abstain) is adopted when "agree" reaches that number. In a
  People's Committee meeting, a tie (as many for as against) goes the way the Chairman voted
  (open votes only: a secret ballot's choice is nobody's to know).
- An election's options are candidates: each one whose votes reach the number is elected.
  Other custom options: the option that reaches it carries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rooms.procedure_models import RuleSet, Threshold, VoteBase, VoteKind

AGREE, DISAGREE = 0, 1  # positions of the standard options (rooms.votes.STANDARD_OPTIONS)


@dataclass(frozen=True)
class VoteRule:
    """How one vote is decided; defaults follow the meeting's rule set."""

    kind: VoteKind = VoteKind.motion
    base: VoteBase = VoteBase.all_members
    threshold: Threshold = Threshold.majority


def default_rule(rule_set: RuleSet, kind: VoteKind = VoteKind.motion) -> VoteRule:
    """Councils and committees decide by more than half of ALL their members (elections in
    a council too); other meetings count opinions among those present."""
    base = VoteBase.present if rule_set == RuleSet.other else VoteBase.all_members
    return VoteRule(kind, base, Threshold.majority)


def needed(threshold: Threshold, base: int) -> int:
    """Votes that carry, of a base of `base` voters (never 0: an empty base carries nothing)."""
    if threshold == Threshold.two_thirds:
        return max(1, math.ceil(2 * base / 3))
    return base // 2 + 1


def percent(count: int, base: int) -> float:
    """A count as a percentage of the base, two decimals (as minutes write "93,33%")."""
    return round(100 * count / base, 2) if base > 0 else 0.0


def outcome(rule: VoteRule, rule_set: RuleSet, totals: list[int], custom_options: bool,
            members: int, present: int, chair_option: int | None = None) -> dict[str, Any]:
    """The decided part of a tally: base, needed, percentages and the outcome.

    `members` and `present` are the body's voting members on this server and those present
    (rooms.attendance.local_headcount); `chair_option` is what the Chairman chose in an open
    vote (None: did not vote, or a secret vote)."""
    base = members if rule.base == VoteBase.all_members else present
    need = needed(rule.threshold, base)
    out: dict[str, Any] = {
        "kind": rule.kind.value, "base_rule": rule.base.value, "threshold": rule.threshold.value,
        "rule_set": rule_set.value, "members": members, "present": present, "base": base,
        "eligible": base, "needed": need,
        "percentages": [percent(n, base) for n in totals],
        "tie_break": False, "elected": [], "chosen": None,
    }
    if rule.kind == VoteKind.election or custom_options:
        winners = [i for i, n in enumerate(totals) if base > 0 and n >= need]
        out["adopted"] = bool(winners)
        if rule.kind == VoteKind.election:
            out["elected"] = winners
            out["outcome"] = "elected" if winners else "none_elected"
        else:
            out["chosen"] = winners[0] if len(winners) == 1 else None
            out["outcome"] = "chosen" if out["chosen"] is not None else "not_adopted"
        return out
    agree = totals[AGREE] if totals else 0
    disagree = totals[DISAGREE] if len(totals) > DISAGREE else 0
    adopted = base > 0 and agree >= need
    if (not adopted and rule_set == RuleSet.committee and agree == disagree and agree > 0
            and chair_option == AGREE):
        adopted = out["tie_break"] = True
    out["adopted"] = adopted
    out["outcome"] = "adopted" if adopted else "not_adopted"
    return out
